// What meddiff must never do to a user's files: delete or overwrite inputs and folders, leave
// truncated outputs on a full disk, read truncated inputs as zeros, or mislabel real and synthetic data.
#include <doctest/doctest.h>

#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/output_policy.h"
#include "io/dicom_series.h"
#include "io/png.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"
#include "test_dicom.h"
#include "test_support.h"

#include <zlib.h>

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

using namespace meddiff;
using test::fixture;

namespace {

int call(const std::vector<std::string>& argv) {
  static const std::vector<cli::Command> table = {{"convert", "", cli::run_convert}, {"preview", "", cli::run_preview},
                                                  {"info", "", cli::run_info}, {"reconstruct", "", cli::run_reconstruct}};
  std::vector<const char*> a{"meddiff"};
  for (const auto& s : argv) a.push_back(s.c_str());
  return cli::dispatch(table, static_cast<int>(a.size()), a.data());
}

// Runs `f` with the current folder set to `dir`.
template <typename F>
void in_folder(const fs::path& dir, F&& f) {
  auto old = fs::current_path();
  fs::current_path(dir);
  try {
    f();
  } catch (...) {
    fs::current_path(old);
    throw;
  }
  fs::current_path(old);
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A tmpfs of `bytes` mounted on `dir` for the object's lifetime (root only: otherwise ok() is false).
class SmallDisk {
 public:
  SmallDisk(const fs::path& dir, size_t bytes) : dir_(dir) {
    fs::create_directories(dir_);
    std::string opts = "size=" + std::to_string(bytes);
    ok_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~SmallDisk() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }

 private:
  fs::path dir_;
  bool ok_ = false;
};

// A volume that does not compress: 32 x 64 x 64 random integers (4 MiB as float, 256 KiB as int16).
Volume noise_volume(Modality m) {
  Volume v;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  v.image = torch::randint(0, 4000, {32, 64, 64}, gen).to(torch::kFloat);
  if (m == Modality::CT) v.image -= 1000;
  v.modality = m;
  v.geometry.spacing = {0.9, 0.9, 2.5};
  return v;
}

fs::path first_file(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  return files.front();
}

// NIfTI-1 `descrip` (80 bytes at offset 148) of a .nii or .nii.gz file.
std::string nifti_descrip(const fs::path& p) {
  gzFile f = gzopen(p.c_str(), "rb");
  REQUIRE(f != nullptr);
  char hdr[348];
  REQUIRE(gzread(f, hdr, sizeof hdr) == 348);
  gzclose(f);
  return std::string(hdr + 148, strnlen(hdr + 148, 80));
}

void cut_file(const fs::path& p, double keep) {
  auto size = fs::file_size(p);
  fs::resize_file(p, static_cast<uintmax_t>(static_cast<double>(size) * keep));
}

}  // namespace

TEST_CASE("output policy: OUT == IN, OUT inside IN, IN inside OUT, the current folder, existing outputs") {
  test::ScratchDir dir("policy");
  write_text_atomically(dir / "in.txt", "x");
  fs::create_directories(dir / "series");
  write_text_atomically(dir / "series/a.dcm", "x");
  OutputRules file;
  file.inputs = {dir / "in.txt"};
  test::check_error([&] { check_output(dir / "in.txt", file); }, {"in.txt", "the same as the input"});
  test::check_error([&] { check_output(dir / "sub/../in.txt", file); }, {"the same as the input"});
  file.inputs = {dir / "series"};
  test::check_error([&] { check_output(dir / "series/out.nii.gz", file); }, {"inside the input"});
  OutputRules folder;
  folder.folder = true;
  folder.inputs = {dir / "in.txt"};
  test::check_error([&] { check_output(dir.path(), folder); }, {"holds the input"});
  folder.inputs = {};
  in_folder(dir / "series", [&] {
    test::check_error([&] { check_output(".", folder); }, {"current folder"});
    test::check_error([&] { check_output("..", folder); }, {"current folder or one of its parents"});
  });
  // A hard link to the input is the input.
  fs::create_hard_link(dir / "in.txt", dir / "link.txt");
  file.inputs = {dir / "in.txt"};
  test::check_error([&] { check_output(dir / "link.txt", file); }, {"the same as the input"});
  file.inputs = {};
  test::check_error([&] { check_output(dir / "link.txt", file); }, {"exists", "--force"});
  file.force = true;
  CHECK_NOTHROW(check_output(dir / "link.txt", file));
  test::check_error([&] { check_output(dir / "series", file); }, {"is a folder"});
  folder.force = true;
  folder.foreign_entry = [](const fs::path&) { return std::string("'a.dcm' (not a DICOM file)"); };
  test::check_error([&] { check_output(dir / "series", folder); }, {"a.dcm", "did not write"});
}

TEST_CASE("convert never deletes the current folder or overwrites without --force") {
  test::ScratchDir dir("convert-safety");
  fs::copy_file(fixture("ct_oblique.nii.gz"), dir / "scan.nii.gz");
  write_text_atomically(dir / "notes.txt", "the user's notes");
  in_folder(dir.path(), [&] {
    CHECK(call({"convert", "scan.nii.gz", ".", "--force"}) == 1);
    CHECK(call({"convert", "scan.nii.gz", "./", "--force"}) == 1);
  });
  CHECK(entries(dir.path()) == std::vector<std::string>{"notes.txt", "scan.nii.gz"});
  // OUT == IN, with and without --force; the input is untouched
  auto before = read_text(dir / "scan.nii.gz");
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "scan.nii.gz").string(), "--force"}) == 1);
  CHECK(read_text(dir / "scan.nii.gz") == before);
  // an existing output file needs --force
  write_text_atomically(dir / "out.nrrd", "precious");
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "out.nrrd").string()}) == 1);
  CHECK(read_text(dir / "out.nrrd") == "precious");
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "out.nrrd").string(), "--force"}) == 0);
  CHECK(io::read_volume(dir / "out.nrrd").image.size(2) == 12);
  // an existing folder of the user's files is never replaced, not even with --force
  fs::create_directories(dir / "r");
  write_text_atomically(dir / "r/thesis.tex", "years of work");
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "r").string(), "--force"}) == 1);
  CHECK(read_text(dir / "r/thesis.tex") == "years of work");
  // a DICOM series meddiff wrote is replaced with --force only
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "series").string()}) == 0);
  auto uid = test::dicom_tag(first_file(dir / "series"), 0x0020, 0x000e);
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "series").string()}) == 1);
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "series").string(), "--force"}) == 0);
  CHECK(test::dicom_tag(first_file(dir / "series"), 0x0020, 0x000e) != uid);
  // ... but not a series of another source (the pydicom fixture), and never the input series itself
  fs::copy(fixture("ct_oblique_dicom"), dir / "scanner");
  CHECK(call({"convert", (dir / "scan.nii.gz").string(), (dir / "scanner").string(), "--force"}) == 1);
  CHECK(call({"convert", (dir / "series").string(), (dir / "series").string(), "--force"}) == 1);
  CHECK(call({"convert", (dir / "series").string(), (dir / "series/x.nii.gz").string()}) == 1);
  CHECK(entries(dir / "scanner").size() == 8);
}

TEST_CASE("preview writes only PNG files and never over its input") {
  test::ScratchDir dir("preview-safety");
  fs::copy_file(fixture("ct_oblique.nii.gz"), dir / "a.nii.gz");
  auto before = read_text(dir / "a.nii.gz");
  CHECK(call({"preview", (dir / "a.nii.gz").string(), "-o", (dir / "a.nii.gz").string()}) == 2);
  CHECK(call({"preview", (dir / "a.nii.gz").string(), "-o", (dir / "a.nii.gz").string(), "--force"}) == 2);
  CHECK(read_text(dir / "a.nii.gz") == before);
  CHECK(call({"preview", (dir / "a.nii.gz").string(), "-o", (dir / "a.png").string()}) == 0);
  CHECK(call({"preview", (dir / "a.nii.gz").string(), "-o", (dir / "a.png").string()}) == 1);  // exists
  CHECK(call({"preview", (dir / "a.nii.gz").string(), "-o", (dir / "a.png").string(), "--force"}) == 0);
}

TEST_CASE("a full disk is an error for every output format and leaves nothing behind") {
  test::ScratchDir dir("full-disk");
  SmallDisk disk(dir / "small", 192 * 1024);
  if (!disk.ok()) {
    MESSAGE("skipped: mounting a tmpfs is not permitted here (needs root)");
    return;
  }
  Volume mr = noise_volume(Modality::MR);
  Volume noisy = mr;
  noisy.image = mr.image + 0.5f;  // float32 voxels: 512 KiB, incompressible
  io::write_volume(mr, dir / "mr.nii.gz");
  io::write_volume(noisy, dir / "noisy.nii.gz");
  for (const std::string out : {"a.nii.gz", "a.nii", "a.mha", "a.nrrd", "a.nhdr", "series"}) {
    INFO(out);
    const bool dicom = out == "series";
    std::string in = (dir / (dicom || out == "a.nrrd" || out == "a.nhdr" ? "mr.nii.gz" : "noisy.nii.gz")).string();
    CHECK(call({"convert", in, (dir / "small" / out).string()}) == 1);
    test::check_error([&] { cli::run_convert({in, (dir / "small" / out).string()}); }, {out});
    CHECK(entries(dir / "small").empty());
  }
  // PNG: fill the disk first
  std::string filler(190 * 1024, 'x');
  {
    std::ofstream f(dir / "small/filler", std::ios::binary);
    f.write(filler.data(), static_cast<std::streamsize>(filler.size()));
  }
  CHECK(call({"preview", (dir / "mr.nii.gz").string(), "-o", (dir / "small/p.png").string()}) == 1);
  test::check_error([&] { write_text_atomically(dir / "small/sidecar.json", std::string(8192, 'j')); }, {"sidecar.json", "write failed"});
  Checkpoint c;
  c.kind = "test";
  c.tensors["w"] = torch::ones({64, 64});
  test::check_error([&] { save_checkpoint(c, dir / "small/last.pt"); }, {"last.pt", "write failed"});
  CHECK(entries(dir / "small") == std::vector<std::string>{"filler"});
}

TEST_CASE("truncated inputs are refused: MHA, NRRD (raw and gzip) and a DICOM slice") {
  test::ScratchDir dir("truncated");
  Volume v = noise_volume(Modality::MR);
  for (const std::string name : {"a.mha", "a.nrrd", "a.nii"}) {
    io::write_volume(v, dir / name);
    CHECK(torch::equal(io::read_volume(dir / name).image, v.image));
    cut_file(dir / name, 0.5);
    test::check_error([&] { io::read_volume(dir / name); }, {name, "truncated"});
  }
  // MetaImage with a separate data file, and NRRD with a detached one
  for (const std::string name : {"b.mhd", "b.nhdr"}) {
    io::write_volume(v, dir / name);
    CHECK(torch::equal(io::read_volume(dir / name).image, v.image));
    for (const auto& e : fs::directory_iterator(dir.path()))  // the data file beside the header
      if (e.path().filename().string().rfind("b.", 0) == 0 && e.path().filename() != name) cut_file(e.path(), 0.9);
    test::check_error([&] { io::read_volume(dir / name); }, {name, "truncated"});
  }
  fs::copy(fixture("ct_oblique_dicom"), dir / "dicom");
  CHECK(io::read_volume(dir / "dicom").image.size(0) == 8);
  fs::path slice = dir / "dicom/slice_03.dcm";
  fs::resize_file(slice, fs::file_size(slice) - 40);
  test::check_error([&] { io::read_volume(dir / "dicom"); }, {"slice_03.dcm", "truncated", "pixel bytes"});
  // cut inside its header, or with garbage appended: GDCM would abort the process (assertions);
  // the file is named as corrupt and this process lives on
  fs::resize_file(slice, 300);
  test::check_error([&] { io::read_volume(dir / "dicom"); }, {"slice_03.dcm", "corrupt DICOM file"});
  fs::copy_file(fixture("ct_oblique_dicom/slice_03.dcm"), slice, fs::copy_options::overwrite_existing);
  { std::ofstream(dir / "dicom/slice_05.dcm", std::ios::app | std::ios::binary) << "garbage"; }
  test::check_error([&] { io::read_volume(dir / "dicom"); }, {"slice_05.dcm", "corrupt DICOM file"});
  test::check_error([&] { io::list_dicom_series(dir / "dicom"); }, {"slice_05.dcm"});
}

TEST_CASE("NIfTI spacing 0 or NaN and NIfTI-2 are refused with the reason") {
  test::check_error([&] { io::read_volume(fixture("zero_pixdim.nii.gz")); }, {"zero_pixdim.nii.gz", "pixdim[3]", "not a positive"});
  test::check_error([&] { io::read_volume(fixture("nan_pixdim.nii.gz")); }, {"nan_pixdim.nii.gz", "pixdim[1]"});
  test::check_error([&] { io::read_volume(fixture("nifti2.nii.gz")); }, {"nifti2.nii.gz", "NIfTI-2"});
}

TEST_CASE("DICOM: SliceThickness and SpacingBetweenSlices are the slice distance for MR and CT") {
  test::ScratchDir dir("dicom-spacing");
  for (Modality m : {Modality::MR, Modality::CT}) {
    Volume v = noise_volume(m);
    v.image = v.image.slice(0, 0, 4).contiguous();
    v.geometry.spacing = {0.7, 0.8, 3.3};
    fs::path out = dir / (m == Modality::MR ? "mr" : "ct");
    io::write_volume(v, out);
    auto f = first_file(out);
    CHECK(test::dicom_tag(f, 0x0018, 0x0088) == "3.3");
    CHECK(test::dicom_tag(f, 0x0018, 0x0050) == "3.3");
    CHECK(test::dicom_tag(f, 0x0028, 0x0030) == "0.8\\0.7");
    CHECK(io::read_volume(out).geometry.spacing[2] == doctest::Approx(3.3));
  }
}

TEST_CASE("marking: converted scans are anonymous, never synthetic and synthetic files say so") {
  test::ScratchDir dir("marking");
  CHECK(call({"convert", fixture("ct_oblique_dicom").string(), (dir / "conv").string()}) == 0);
  auto f = first_file(dir / "conv");
  CHECK(test::dicom_tag(f, 0x0010, 0x0010) == "ANONYMOUS^MEDDIFF");
  CHECK(test::dicom_tag(f, 0x0010, 0x0020) != "FIXTURE-001");
  CHECK(test::dicom_tag(f, 0x0008, 0x0008).find("DERIVED\\SECONDARY") == 0);
  CHECK(test::dicom_tag(f, 0x0008, 0x103e) == "converted by meddiff");
  for (auto tag : {std::pair<uint16_t, uint16_t>{0x0008, 0x103e}, {0x0020, 0x4000}, {0x0010, 0x0010}, {0x0008, 0x1030}})
    CHECK(test::dicom_tag(f, tag.first, tag.second).find("SYNTHETIC") == std::string::npos);
  io::WriteOptions wo;
  wo.description = "SYNTHETIC meddiff test seed=1 index=2 class=0";
  Volume v = noise_volume(Modality::MR);
  io::write_volume(v, dir / "s.nii.gz", wo);
  CHECK(nifti_descrip(dir / "s.nii.gz") == wo.description);
  io::write_png(torch::zeros({4, 5}, torch::kUInt8), dir / "s.png", {{"Description", "SYNTHETIC test"}});
  CHECK(io::read_png_text(dir / "s.png").at("Description") == "SYNTHETIC test");
  CHECK(io::read_png(dir / "s.png").size(1) == 5);
}

TEST_CASE("locks: a second holder is refused naming the first and a dead holder's lock is taken over") {
  test::ScratchDir dir("locks");
  auto path = dir / "job.lock";
  {
    auto held = FileLock::acquire(path, "first job", "the folder");
    test::check_error([&] { FileLock::acquire(path, "second job", "the folder"); }, {"the folder", "in use", "first job"});
  }
  // a lock file left by a process that is gone (the kernel released its flock)
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  write_text_atomically(path, fmt::format(R"({{"host": "{}", "pid": {}, "started": "x", "purpose": "killed job"}})", host_name(), child));
  auto lock = FileLock::try_acquire(path, "new job");
  REQUIRE(lock.has_value());
  CHECK(FileLock::holder(path)->pid == static_cast<long>(getpid()));
}

TEST_CASE("temporaries: names carry host and pid and only those of dead processes are cleaned") {
  test::ScratchDir dir("temps");
  TempPath live(dir / "a.nii.gz");
  write_text_atomically(dir / "keep.txt", "x");
  { std::ofstream(live.path()) << "partial"; }
  CHECK(is_temp_name(live.path().filename().string()));
  std::ofstream(dir / ".last.tmp-otherhost-1-0.pt") << "x";
  test::leave_stale_temp(dir / "last.pt");
  CHECK(entries(dir.path()).size() == 4);
  CHECK(remove_stale_temps(dir.path()) == 1);  // this host, dead pid
  CHECK(fs::exists(live.path()));
  CHECK(fs::exists(dir / ".last.tmp-otherhost-1-0.pt"));
  CHECK(remove_stale_temps(dir.path(), true) == 2);
  CHECK(entries(dir.path()) == std::vector<std::string>{"keep.txt"});
}
