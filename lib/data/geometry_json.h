#pragma once
// A Geometry as JSON ({"spacing", "origin", "direction"}, ITK/DICOM order x, y, z) and back: how checkpoints,
// mask banks and the dataset cache record where a volume sits in the world.
#include "data/volume.h"

#include <nlohmann/json.hpp>

namespace meddiff {

nlohmann::json geometry_json(const Geometry& g);
Geometry geometry_from_json(const nlohmann::json& j);

}  // namespace meddiff
