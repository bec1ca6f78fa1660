#include "core/torch_file.h"
#include "core/error.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <map>

namespace meddiff {
namespace {

using Kind = PyValue::Kind;

PyRef make(Kind k) {
  auto v = std::make_shared<PyValue>();
  v->kind = k;
  return v;
}
PyRef make_int(int64_t i) {
  auto v = make(Kind::Int);
  v->i = i;
  return v;
}
PyRef make_str(Kind k, std::string s) {
  auto v = make(k);
  v->s = std::move(s);
  return v;
}

// A global ("module name") before it is called: an Object without arguments.
PyRef make_global(const std::string& module, const std::string& name) { return make_str(Kind::Object, module + "." + name); }

c10::ScalarType storage_dtype(const std::string& storage_class) {
  static const std::map<std::string, c10::ScalarType> types{
      {"torch.FloatStorage", at::kFloat},    {"torch.DoubleStorage", at::kDouble}, {"torch.HalfStorage", at::kHalf},
      {"torch.BFloat16Storage", at::kBFloat16}, {"torch.LongStorage", at::kLong}, {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},    {"torch.CharStorage", at::kChar},     {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool},      {"torch.UntypedStorage", at::kByte},  {"torch.storage.UntypedStorage", at::kByte}};
  auto it = types.find(storage_class);
  if (it == types.end()) throw std::runtime_error("unsupported storage type " + storage_class);
  return it->second;
}

// A dtype global ("torch.float32", "torch.uint16", ...) as _rebuild_tensor_v3 names it.
c10::ScalarType named_dtype(const std::string& name) {
  static const std::map<std::string, c10::ScalarType> types{
      {"torch.float32", at::kFloat},  {"torch.float64", at::kDouble}, {"torch.float16", at::kHalf},   {"torch.bfloat16", at::kBFloat16},
      {"torch.int64", at::kLong},     {"torch.int32", at::kInt},      {"torch.int16", at::kShort},    {"torch.int8", at::kChar},
      {"torch.uint8", at::kByte},     {"torch.bool", at::kBool},      {"torch.uint16", at::kUInt16},  {"torch.uint32", at::kUInt32},
      {"torch.uint64", at::kUInt64},  {"torch.float8_e4m3fn", at::kFloat8_e4m3fn}, {"torch.float8_e5m2", at::kFloat8_e5m2}};
  auto it = types.find(name);
  if (it == types.end()) throw std::runtime_error("unsupported tensor dtype " + name);
  return it->second;
}

std::vector<int64_t> int_tuple(const PyRef& v, const char* what) {
  if (!v || (v->kind != Kind::Tuple && v->kind != Kind::List)) throw std::runtime_error(std::string(what) + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& e : v->items) {
    if (e->kind != Kind::Int) throw std::runtime_error(std::string(what) + " holds a non-integer");
    out.push_back(e->i);
  }
  return out;
}

class Machine {
 public:
  Machine(const std::string& pickle, caffe2::serialize::PyTorchStreamReader& zip) : p_(pickle), zip_(zip) {}

  PyRef run() {
    while (true) {
      uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;          // PROTO
        case 0x95: bytes(8); break;        // FRAME (protocol 4)
        case '.': return pop();            // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case 'N': push(make(Kind::None)); break;
        case 0x88: case 0x89: {            // NEWTRUE, NEWFALSE
          auto v = make(Kind::Bool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'K': push(make_int(byte())); break;
        case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;
        case 'J': push(make_int(static_cast<int32_t>(le(4)))); break;
        case 0x8a: {                       // LONG1: little-endian two's complement of n bytes
          size_t n = byte();
          if (n > 8) throw std::runtime_error("integer wider than 64 bits");
          uint64_t u = n ? le(n) : 0;
          if (n && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t{0} << (8 * n);
          push(make_int(static_cast<int64_t>(u)));
          break;
        }
        case 'G': {                        // BINFLOAT: big-endian double
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | byte();
          auto v = make(Kind::Float);
          std::memcpy(&v->f, &u, 8);
          push(v);
          break;
        }
        case 'X': push(make_str(Kind::Str, bytes(le(4)))); break;   // BINUNICODE
        case 0x8c: push(make_str(Kind::Str, bytes(byte()))); break; // SHORT_BINUNICODE
        case 0x8d: push(make_str(Kind::Str, bytes(le(8)))); break;  // BINUNICODE8
        case 'T': push(make_str(Kind::Str, bytes(le(4)))); break;   // BINSTRING
        case 'U': push(make_str(Kind::Str, bytes(byte()))); break;  // SHORT_BINSTRING
        case 'B': push(make_str(Kind::Bytes, bytes(le(4)))); break; // BINBYTES
        case 'C': push(make_str(Kind::Bytes, bytes(byte()))); break; // SHORT_BINBYTES
        case 0x8e: push(make_str(Kind::Bytes, bytes(le(8)))); break; // BINBYTES8
        case ')': push(make(Kind::Tuple)); break;
        case ']': push(make(Kind::List)); break;
        case '}': push(make(Kind::Dict)); break;
        case 0x8f: push(make(Kind::Set)); break;                    // EMPTY_SET
        case 't': case 'l': case 0x91: {   // TUPLE, LIST, FROZENSET
          auto v = make(op == 't' ? Kind::Tuple : op == 'l' ? Kind::List : Kind::Set);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: { // TUPLE1..3
          auto v = make(Kind::Tuple);
          v->items.resize(op - 0x84);
          for (size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          push(v);
          break;
        }
        case 'd': {                        // DICT
          auto v = make(Kind::Dict);
          add_pairs(*v, pop_mark());
          push(v);
          break;
        }
        case 'a': {                        // APPEND
          auto x = pop();
          top()->items.push_back(x);
          break;
        }
        case 'e': case 0x90: {             // APPENDS, ADDITEMS
          auto xs = pop_mark();
          auto& t = top()->items;
          t.insert(t.end(), xs.begin(), xs.end());
          break;
        }
        case 's': {                        // SETITEM
          auto v = pop();
          auto k = pop();
          set_item(top(), k, v);
          break;
        }
        case 'u': {                        // SETITEMS
          auto xs = pop_mark();
          auto d = top();
          for (size_t k = 0; k + 1 < xs.size(); k += 2) set_item(d, xs[k], xs[k + 1]);
          break;
        }
        case 'q': memo_[byte()] = top(); break;                      // BINPUT
        case 'r': memo_[le(4)] = top(); break;                       // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;               // MEMOIZE
        case 'h': push(memo(byte())); break;                         // BINGET
        case 'j': push(memo(le(4))); break;                          // LONG_BINGET
        case '0': pop(); break;                                      // POP
        case '1': pop_mark(); break;                                 // POP_MARK
        case '2': push(top()); break;                                // DUP
        case 'c': {                        // GLOBAL "module\nname\n"
          auto module = line();
          auto name = line();
          push(make_global(module, name));
          break;
        }
        case 0x93: {                       // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          push(make_global(module->s, name->s));
          break;
        }
        case 'R': case 0x81: {             // REDUCE f(*args), NEWOBJ cls(*args)
          auto args = pop();
          auto f = pop();
          push(call(f, args));
          break;
        }
        case 'b': {                        // BUILD: attributes of the object below (an OrderedDict's _metadata, ...)
          pop();
          top();
          break;
        }
        case 'Q': push(persistent(pop())); break;                    // BINPERSID
        default: throw std::runtime_error(fmt::format("unsupported pickle opcode 0x{:02x}", op));
      }
    }
  }

 private:
  uint8_t byte() {
    if (pos_ >= p_.size()) throw std::runtime_error("truncated pickle");
    return static_cast<uint8_t>(p_[pos_++]);
  }
  std::string bytes(uint64_t n) {
    if (n > p_.size() - pos_) throw std::runtime_error("truncated pickle");
    auto s = p_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t le(size_t n) {
    uint64_t u = 0;
    for (size_t k = 0; k < n; ++k) u |= uint64_t{byte()} << (8 * k);
    return u;
  }
  std::string line() {
    auto e = p_.find('\n', pos_);
    if (e == std::string::npos) throw std::runtime_error("truncated pickle");
    auto s = p_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }
  void push(PyRef v) { stack_.push_back(std::move(v)); }
  PyRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) throw std::runtime_error("pickle stack underflow");
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PyRef top() {
    if (stack_.empty()) throw std::runtime_error("pickle stack underflow");
    return stack_.back();
  }
  std::vector<PyRef> pop_mark() {
    if (marks_.empty()) throw std::runtime_error("pickle MARK missing");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> xs(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return xs;
  }
  PyRef memo(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) throw std::runtime_error("pickle memo entry missing");
    return it->second;
  }
  static void add_pairs(PyValue& d, const std::vector<PyRef>& xs) {
    for (size_t k = 0; k + 1 < xs.size(); k += 2) d.dict.emplace_back(xs[k], xs[k + 1]);
  }
  static void set_item(const PyRef& d, const PyRef& k, const PyRef& v) {
    if (d->kind != Kind::Dict) return;  // an opaque object's state
    d->dict.emplace_back(k, v);
  }

  // ("storage", storage class, key, location, numel): the archive's record data/<key> as a flat tensor.
  PyRef persistent(const PyRef& pid) {
    if (pid->kind != Kind::Tuple || pid->items.size() < 3 || pid->items[0]->s != "storage")
      throw std::runtime_error("unsupported persistent id");
    const auto& key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      auto dtype = storage_dtype(pid->items[1]->s);
      auto [data, size] = zip_.getRecord("data/" + key);
      int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
      auto flat = torch::empty({static_cast<int64_t>(size) / elem}, torch::TensorOptions().dtype(dtype));
      std::memcpy(flat.data_ptr(), data.get(), size);
      it = storages_.emplace(key, flat).first;
    }
    auto v = make(Kind::Tensor);
    v->tensor = it->second;
    return v;
  }

  PyRef call(const PyRef& f, const PyRef& args) {
    if (f->kind != Kind::Object || !f->items.empty()) return opaque("a called object", args);
    const std::string& name = f->s;
    const auto& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict" || name == "__builtin__.dict") {
      auto d = make(Kind::Dict);
      if (!a.empty() && (a[0]->kind == Kind::List || a[0]->kind == Kind::Tuple))
        for (const auto& pair : a[0]->items)
          if (pair->items.size() == 2) d->dict.emplace_back(pair->items[0], pair->items[1]);
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor" || name == "torch._utils._rebuild_tensor_v3") {
      if (a.size() < 4 || a[0]->kind != Kind::Tensor || a[1]->kind != Kind::Int) throw std::runtime_error("malformed tensor");
      torch::Tensor flat = a[0]->tensor;
      if (name == "torch._utils._rebuild_tensor_v3") {  // an untyped (byte) storage and the dtype as the 7th argument
        if (a.size() < 7 || a[6]->kind != Kind::Object) throw std::runtime_error("malformed tensor");
        flat = flat.view(named_dtype(a[6]->s));
      }
      auto t = make(Kind::Tensor);
      t->tensor = flat.as_strided(int_tuple(a[2], "tensor size"), int_tuple(a[3], "tensor stride"), a[1]->i).clone(at::MemoryFormat::Contiguous);
      return t;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != Kind::Tensor) throw std::runtime_error("malformed parameter");
      return a[0];
    }
    if (name == "builtins.set" || name == "builtins.frozenset" || name == "__builtin__.set" || name == "__builtin__.frozenset") {
      auto s = make(Kind::Set);
      if (!a.empty()) s->items = a[0]->items;
      return s;
    }
    if (name == "torch.Size" || name == "builtins.tuple" || name == "__builtin__.tuple") return a.empty() ? make(Kind::Tuple) : a[0];
    return opaque(name, args);
  }
  static PyRef opaque(const std::string& name, const PyRef& args) {
    auto o = make_str(Kind::Object, name);
    o->items = args->items;
    o->items.insert(o->items.begin(), make(Kind::None));  // called: never a bare global again
    return o;
  }

  const std::string& p_;
  caffe2::serialize::PyTorchStreamReader& zip_;
  size_t pos_ = 0;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, PyRef> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

}  // namespace

PyRef PyValue::get(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : dict)
    if (k->kind == Kind::Str && k->s == key) return v;
  return nullptr;
}

std::string PyValue::type_name() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Set: return "set";
    case Kind::Dict: return "dict";
    case Kind::Tensor: return "tensor";
    case Kind::Object: return "object " + s;
  }
  return "value";
}

PyRef read_torch_file(const std::filesystem::path& path) {
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open: {}", path.string(), std::filesystem::exists(path) ? "permission denied" : "no such file");
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "PK\x03\x04", 4) != 0) {
    if (static_cast<uint8_t>(magic[0]) == 0x80)
      fail("{}: written by torch.save in the legacy format of PyTorch < 1.6; load and save it again with a current PyTorch",
           path.string());
    fail("{}: not a file written by torch.save (not a zip archive)", path.string());
  }
  try {
    caffe2::serialize::PyTorchStreamReader zip(path.string());
    if (zip.hasRecord("byteorder")) {
      auto [order, n] = zip.getRecord("byteorder");
      if (std::string(static_cast<const char*>(order.get()), n) != "little")
        fail("{}: written on a big-endian machine; load and save it again on a little-endian one", path.string());
    }
    auto [data, size] = zip.getRecord("data.pkl");
    std::string pickle(static_cast<const char*>(data.get()), size);
    return Machine(pickle, zip).run();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail("{}: not a file written by torch.save ({})", path.string(), what.substr(0, what.find('\n')).substr(0, 200));
  }
}

}  // namespace meddiff
