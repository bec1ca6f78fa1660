#include <doctest/doctest.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "test_support.h"

#include <fstream>

using namespace meddiff;

TEST_CASE("sha256 matches the FIPS 180-4 test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  test::ScratchDir dir("sha");
  write_text_atomically(dir / "f.txt", "abc");
  CHECK(sha256_file(dir / "f.txt") == sha256_hex("abc"));
  CHECK_THROWS_WITH_AS(sha256_file(dir / "missing"), doctest::Contains("missing"), Error);
}

TEST_CASE("full_extension knows double extensions and is case-insensitive") {
  CHECK(full_extension("a/b.nii.gz") == "nii.gz");
  CHECK(full_extension("B.NII.GZ") == "nii.gz");
  CHECK(full_extension("x.mha") == "mha");
  CHECK(full_extension("folder/") == "");
  CHECK(full_extension(".hidden") == "");
}

TEST_CASE("write_atomically leaves the old file in place when the writer fails") {
  test::ScratchDir dir("atomic");
  write_text_atomically(dir / "out.txt", "old");
  CHECK_THROWS_AS(write_atomically(dir / "out.txt",
                                   [](const fs::path& tmp) {
                                     std::ofstream(tmp) << "half";
                                     fail("writer died");
                                   }),
                  Error);
  CHECK(read_text(dir / "out.txt") == "old");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);  // no temporary left behind
  write_text_atomically(dir / "sub/new.txt", "new");
  CHECK(read_text(dir / "sub/new.txt") == "new");
}

TEST_CASE("TempPath keeps the extension so format-by-extension writers work") {
  TempPath t("/tmp/x/case.nii.gz");
  CHECK(full_extension(t.path()) == "nii.gz");
  CHECK(t.path().parent_path() == fs::path("/tmp/x"));
  CHECK(t.path().filename().string().rfind(".case.tmp-", 0) == 0);
}

TEST_CASE("format_duration") {
  CHECK(format_duration(5) == "5s");
  CHECK(format_duration(65) == "1m05s");
  CHECK(format_duration(3725) == "1h02m");
  CHECK(format_duration(-1) == "?");
}
