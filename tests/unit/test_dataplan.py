"""The data upload's plan (tasks/data/plan.py): what is uploaded, deleted or kept, and which
names may become objects.  Pure: maps of fingerprints in, a plan out."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tasks.data import plan as dataplan
from tasks.data.plan import Fingerprint


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc(data: bytes) -> str:
    import google_crc32c
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def local(data: bytes) -> Fingerprint:
    """A file on disk: size and MD5 (CRC32C only when computed on demand)."""
    return Fingerprint(len(data), md5(data))


def stored(data: bytes, generation: int = 1, composite: bool = False) -> Fingerprint:
    """A GCS object: both checksums, none but CRC32C when composite."""
    return Fingerprint(len(data), None if composite else md5(data), crc(data), generation)


# ---------------------------------------------------------------- comparing content

def test_same_bytes_compare_equal_by_md5():
    assert dataplan.same_content(local(b"abc"), stored(b"abc")) is True


def test_other_bytes_of_the_same_size_differ_by_md5():
    assert dataplan.same_content(local(b"abc"), stored(b"abd")) is False


def test_md5_decides_even_when_the_crc32c_would_agree():
    # the MD5 is the stronger check: it is used whenever both sides have one
    source = Fingerprint(3, md5(b"abc"), crc(b"abc"))
    target = Fingerprint(3, md5(b"xyz"), crc(b"abc"))
    assert dataplan.same_content(source, target) is False


def test_a_composite_object_is_compared_by_crc32c():
    source = Fingerprint(3, md5(b"abc"), crc(b"abc"))
    assert dataplan.same_content(source, stored(b"abc", composite=True)) is True
    assert dataplan.same_content(source, stored(b"abd", composite=True)) is False


def test_a_composite_object_cannot_be_compared_with_a_file_whose_crc32c_is_unknown():
    assert dataplan.same_content(local(b"abc"), stored(b"abc", composite=True)) is None


def test_a_different_size_differs_whatever_the_checksums():
    assert dataplan.same_content(Fingerprint(4, md5(b"abc")), Fingerprint(3, md5(b"abc"))) is False
    assert dataplan.same_content(Fingerprint(4, None, crc(b"abc")), Fingerprint(3, None, crc(b"abc"))) is False


def test_an_unknown_size_leaves_the_checksum_to_decide():
    assert dataplan.same_content(Fingerprint(None, md5(b"abc")), Fingerprint(3, md5(b"abc"))) is True
    assert dataplan.same_content(Fingerprint(3, md5(b"abc")), Fingerprint(None, md5(b"abc"))) is True


def test_no_checksum_in_common_cannot_be_compared():
    assert dataplan.same_content(Fingerprint(3), Fingerprint(3)) is None
    assert dataplan.same_content(Fingerprint(3, md5(b"abc")), Fingerprint(3, None, crc(b"abc"))) is None


def test_crc32c_is_asked_for_only_where_a_composite_object_needs_it():
    source = {"a": local(b"1"), "b": local(b"2"), "c": local(b"3"), "new": local(b"4")}
    target = {"a": stored(b"1"), "b": stored(b"2", composite=True), "c": stored(b"x", composite=True),
              "gone": stored(b"5", composite=True)}
    assert dataplan.crc32c_needed(source, target) == ["b", "c"]


def test_crc32c_is_not_asked_for_when_the_source_has_it_already():
    source = {"b": Fingerprint(1, md5(b"2"), crc(b"2"))}
    assert dataplan.crc32c_needed(source, {"b": stored(b"2", composite=True)}) == []


def test_crc32c_is_not_asked_for_when_the_sizes_already_differ():
    assert dataplan.crc32c_needed({"b": local(b"22")}, {"b": stored(b"2", composite=True)}) == []


# ---------------------------------------------------------------- the plan

SOURCE = {"same.csv": local(b"same"), "changed.csv": local(b"new"), "added.csv": local(b"added")}
TARGET = {"same.csv": stored(b"same"), "changed.csv": stored(b"old"), "removed.csv": stored(b"gone")}


def test_first_upload_writes_everything():
    plan = dataplan.plan(SOURCE, {}, prune=False)
    assert plan.upload == ("added.csv", "changed.csv", "same.csv")
    assert (plan.delete, plan.kept, plan.unchanged) == ((), (), 0)


def test_only_new_and_changed_files_are_uploaded():
    plan = dataplan.plan(SOURCE, TARGET, prune=False)
    assert plan.upload == ("added.csv", "changed.csv")
    assert plan.unchanged == 1


def test_nothing_changed_uploads_nothing():
    target = {rel: stored(data) for rel, data in {"same.csv": b"same", "changed.csv": b"new",
                                                  "added.csv": b"added"}.items()}
    plan = dataplan.plan(SOURCE, target, prune=True)
    assert (plan.upload, plan.delete, plan.kept, plan.unchanged) == ((), (), (), 3)


def test_a_removed_file_is_deleted_only_when_pruning():
    pruned = dataplan.plan(SOURCE, TARGET, prune=True)
    assert pruned.delete == ("removed.csv",) and pruned.kept == ()
    kept = dataplan.plan(SOURCE, TARGET, prune=False)
    assert kept.delete == () and kept.kept == ("removed.csv",)


def test_an_object_that_cannot_be_compared_is_uploaded_again():
    plan = dataplan.plan({"a": local(b"1")}, {"a": Fingerprint(1)}, prune=False)
    assert plan.upload == ("a",) and plan.unchanged == 0


def test_a_composite_object_with_the_same_crc32c_is_not_uploaded_again():
    source = {"a": Fingerprint(1, md5(b"1"), crc(b"1"))}
    assert dataplan.plan(source, {"a": stored(b"1", composite=True)}, prune=False).upload == ()


def test_summary_says_what_was_done_and_what_was_kept():
    assert dataplan.plan(SOURCE, TARGET, prune=True).summary() == "2 uploaded, 1 deleted, 1 unchanged"
    kept = dataplan.plan(SOURCE, TARGET, prune=False).summary()
    assert kept == ("2 uploaded, 0 deleted, 1 unchanged, "
                    "1 kept that the source no longer has (buckets.prune_data is false)")


# ---------------------------------------------------------------- names and prefixes

@pytest.mark.parametrize("rel", ["a.csv", "dir/sub/a b.csv", "ünïcode/データ.csv", "..hidden", "a..b", ".x"])
def test_ordinary_names_are_accepted(rel):
    assert dataplan.name_problem("flights", rel) == ""
    assert dataplan.object_name("flights", rel) == f"flights/{rel}"


@pytest.mark.parametrize("rel, why", [
    ("", "empty name"),
    ("../other/x", "'..' part"),
    ("a/../../x", "'..' part"),
    ("..", "'..' part"),
    ("./a", "'.' or '..' part"),
    ("a//b", "empty, '.'"),
    ("/etc/passwd", "empty, '.'"),
    ("dir/", "empty, '.'"),
    ("a\nb", "U+000A"),
    ("a\x00b", "U+0000"),
    ("a\x7fb", "U+007F"),
    ("a\x85b", "U+0085"),
    ("a\u2028b", "U+2028"),
    ("evil\u202ecsv.exe", "U+202E"),
    ("bad\udcffname", "U+DCFF"),
    ("x" * 256, "longer than 255 bytes"),
    ("/".join(["d" * 200] * 6), "more than 1024 bytes"),
])
def test_names_that_could_leave_the_prefix_or_mislead_are_refused(rel, why):
    assert why in dataplan.name_problem("flights", rel)
    with pytest.raises(dataplan.PlanError):
        dataplan.object_name("flights", rel)


def test_refusals_say_exactly_what_is_wrong():
    assert dataplan.name_problem("d", "") == "an empty name"
    assert dataplan.name_problem("d", "a/../b") == \
        "an empty, '.' or '..' part (it would leave the dataset's folder or name another file)"
    assert dataplan.name_problem("d", "a\nb") == "the character U+000A"
    assert dataplan.name_problem("d", "a\nb\tc\nd") == "the characters U+0009, U+000A"
    assert dataplan.name_problem("d", "\x01\x02\x03\x04") == "the characters U+0001, U+0002, U+0003"
    assert dataplan.name_problem("d", "x" * 256) == "a part longer than 255 bytes"
    assert dataplan.name_problem("d", "/".join(["x" * 250] * 5)) == \
        "more than 1024 bytes with the dataset's prefix"


def test_the_limits_are_inclusive():
    assert dataplan.name_problem("d", "x" * 255) == ""
    assert dataplan.name_problem("d", "é" * 127 + "x") == ""           # 255 bytes
    assert dataplan.name_problem("d", "é" * 128) != ""                 # 256 bytes
    exactly = "/".join(["x" * 250] * 4) + "/" + "x" * 18                # 1022 bytes, 1024 with "d/"
    assert dataplan.name_problem("d", exactly) == ""
    assert dataplan.name_problem("dd", exactly) != ""


def test_object_name_refusals_name_the_file_and_the_dataset():
    with pytest.raises(dataplan.PlanError, match=r"^'a/\.\./b' cannot be stored under flights/: an empty, '\.' or"):
        dataplan.object_name("flights", "a/../b")
    with pytest.raises(dataplan.PlanError, match=r"^dataset name 'Flights' is not a DNS label$"):
        dataplan.object_name("Flights", "a.csv")
    with pytest.raises(dataplan.PlanError, match=r"^dataset name 'a/b' is not a DNS label$"):
        dataplan.dataset_prefix("a/b")
    long_part = "/".join(["x" * 250] * 4) + "/" + "x" * 18  # fits under "d/", not under a longer name
    assert dataplan.object_name("d", long_part) == "d/" + long_part
    with pytest.raises(dataplan.PlanError, match="more than 1024 bytes"):
        dataplan.object_name("flights", long_part)


def test_the_length_limit_counts_the_dataset_prefix_in_utf8_bytes():
    rel = "/".join(["é" * 100] * 5)  # 200 bytes a part, 1004 bytes in all
    assert dataplan.name_problem("d", rel) == ""
    assert "1024" in dataplan.name_problem("d" * 20, rel)


def test_name_problems_names_each_bad_file_in_order():
    problems = dataplan.name_problems("flights", ["ok.csv", "z/../x", "a\tb"])
    assert problems == ["'a\\tb': the character U+0009",
                        "'z/../x': an empty, '.' or '..' part (it would leave the dataset's folder or name "
                        "another file)"]


def test_name_problems_count_the_dataset_name_in_the_length():
    rel = "/".join(["x" * 250] * 4) + "/" + "x" * 11  # 1015 bytes
    assert dataplan.name_problems("d" * 8, [rel]) == []
    assert dataplan.name_problems("d" * 9, [rel]) == [f"{rel!r}: more than 1024 bytes with the dataset's prefix"]


def test_an_object_name_needs_a_dataset_name_that_is_a_dns_label():
    for bad in ("", "..", "a/b", "Upper", "-x"):
        with pytest.raises(dataplan.PlanError):
            dataplan.object_name(bad, "a.csv")
        with pytest.raises(dataplan.PlanError):
            dataplan.dataset_prefix(bad)


def test_a_dataset_lists_its_own_folder_only():
    assert dataplan.dataset_prefix("flights") == "flights/"
    assert dataplan.relative_in_dataset("flights", "flights/a/b.csv") == "a/b.csv"
    assert dataplan.relative_in_dataset("flights", "flights-old/a.csv") is None
    assert dataplan.relative_in_dataset("flights", "flightsa.csv") is None
    assert dataplan.relative_in_dataset("flights", "flights/dir/") is None  # a folder placeholder
    assert dataplan.relative_in_dataset("flights", "other/flights/a.csv") is None


@pytest.mark.parametrize("prefix, name, rel", [
    ("flights", "flights/a.csv", "a.csv"),
    ("flights/", "flights/sub/a.csv", "sub/a.csv"),
    ("data/flights", "data/flights/a.csv", "a.csv"),
    ("flights", "flights-old/a.csv", None),
    ("flights", "flightsa.csv", None),
    ("data/2024.csv", "data/2024.csv", "2024.csv"),
    ("flights", "flights", "flights"),
    ("", "any/where.csv", "any/where.csv"),
    ("flights", "flights/dir/", None),
    ("", "dir/", None),
    ("Xrays", "Xrays/a.csv", "a.csv"),   # a prefix is stripped of slashes, nothing else
    ("/flights/", "flights/a.csv", "a.csv"),
])
def test_a_source_prefix_is_a_folder_or_one_object(prefix, name, rel):
    assert dataplan.relative_in_source(prefix, name) == rel


def test_a_source_object_named_with_dots_keeps_them_for_the_name_check():
    rel = dataplan.relative_in_source("flights", "flights/../../etc/passwd")
    assert rel == "../../etc/passwd" and "'..'" in dataplan.name_problem("flights", rel)


# ---------------------------------------------------------------- the manifest

def test_the_manifest_round_trips_sorted_and_without_duplicates():
    data = dataplan.manifest_bytes(["b", "a", "b"])
    assert data == b'{\n  "format": "classtools-datasets-1",\n  "datasets": [\n    "a",\n    "b"\n  ]\n}\n'
    assert json.loads(data) == {"format": dataplan.MANIFEST_FORMAT, "datasets": ["a", "b"]}
    assert dataplan.parse_manifest(data, "m") == ["a", "b"]


def test_no_manifest_lists_nothing():
    assert dataplan.parse_manifest(None, "m") == []


@pytest.mark.parametrize("data, why", [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "JSON object with format"),
    (json.dumps({"format": "other", "datasets": []}).encode(), "JSON object with format"),
    (json.dumps({"format": dataplan.MANIFEST_FORMAT}).encode(), "'datasets': a list"),
    (json.dumps({"format": dataplan.MANIFEST_FORMAT, "datasets": "a"}).encode(), "'datasets': a list"),
    (json.dumps({"format": dataplan.MANIFEST_FORMAT, "datasets": [""]}).encode(), "holds ''"),
    (json.dumps({"format": dataplan.MANIFEST_FORMAT, "datasets": ["../x"]}).encode(), "holds '../x'"),
    (json.dumps({"format": dataplan.MANIFEST_FORMAT, "datasets": ["ok", 3]}).encode(), "holds 3"),
    (b" " * (dataplan.MAX_MANIFEST_BYTES + 1), "bytes, expected at most"),
])
def test_a_manifest_this_project_did_not_write_is_refused_never_trusted(data, why):
    with pytest.raises(dataplan.PlanError) as refused:
        dataplan.parse_manifest(data, "gs://b/.classroom/datasets.json")
    message = str(refused.value)
    assert why in message and message.startswith("gs://b/.classroom/datasets.json is not the dataset manifest")
    assert message.endswith("); it was left as it is: repair or remove it") and "\n" not in message


def test_manifest_refusals_in_full():
    def refusal(data):
        with pytest.raises(dataplan.PlanError) as refused:
            dataplan.parse_manifest(data, "m")
        return str(refused.value).removeprefix("m is not the dataset manifest this project writes (") \
            .removesuffix("); it was left as it is: repair or remove it")
    assert refusal(b"{") == "it is not JSON"
    assert refusal(json.dumps({"format": dataplan.MANIFEST_FORMAT}).encode()) == \
        "expected 'datasets': a list of dataset names"
    assert refusal(b" " * (dataplan.MAX_MANIFEST_BYTES + 1)) == \
        f"it is {dataplan.MAX_MANIFEST_BYTES + 1} bytes, expected at most {dataplan.MAX_MANIFEST_BYTES}"
    assert refusal(b" " * dataplan.MAX_MANIFEST_BYTES) == "it is not JSON"  # the size itself is allowed


def test_only_recorded_datasets_that_the_config_no_longer_has_are_removed():
    assert dataplan.removed_datasets(["a", "b", "c"], ["b", "d"]) == ["a", "c"]
    assert dataplan.removed_datasets([], ["b"]) == []
    assert dataplan.removed_datasets(["b"], ["b"]) == []


def test_many_name_problems_make_one_line_with_a_count():
    assert dataplan.first_and_count(["'a': x"]) == "'a': x"
    assert dataplan.first_and_count(["'a': x", "'b': y"]) == "'a': x (and 1 more)"
    assert dataplan.first_and_count(["'a': x", "'b': y", "'c': z"]) == "'a': x (and 2 more)"
