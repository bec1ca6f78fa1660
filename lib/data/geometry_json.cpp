#include "data/geometry_json.h"

namespace meddiff {

nlohmann::json geometry_json(const Geometry& g) {
  return {{"spacing", g.spacing}, {"origin", g.origin}, {"direction", g.direction}};
}

Geometry geometry_from_json(const nlohmann::json& j) {
  Geometry g;
  g.spacing = j.at("spacing").get<std::array<double, 3>>();
  g.origin = j.at("origin").get<std::array<double, 3>>();
  g.direction = j.at("direction").get<std::array<double, 9>>();
  return g;
}

}  // namespace meddiff
