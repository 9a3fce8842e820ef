"""Records name the tool versions and the source commit they were made with."""

from deltanet_hw.provenance import source_commit, versions


def test_provenance_names_versions_and_commit():
    got = versions("amaranth", "no-such-package-xyz")
    assert got["amaranth"] and got["no-such-package-xyz"] is None and got["python"]
    commit = source_commit()  # this checkout is a git clone
    assert commit is not None and len(commit.removesuffix("+dirty")) == 40
