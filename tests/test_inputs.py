"""The lake's inputs and the run manifest: history and snapshots, corrections, fingerprints."""

from __future__ import annotations

import pytest

from carrental.inputs import InputFile, Inputs, Manifest, MissingInputs

T1, T2, T3 = "2026-12-01T10:00:00+00:00", "2026-12-02T10:00:00+00:00", "2026-12-03T10:00:00+00:00"


def accepted(dataset: str, name: str, content: str, when: str = T1) -> InputFile:
    sha = (content * 64)[:64]
    return InputFile(dataset, f"raw/{dataset}/{name}", sha, 10, when, when)


def full_inputs() -> Inputs:
    inputs = Inputs()
    for dataset in ("vehicles", "locations", "users"):
        inputs.accept(accepted(dataset, f"{dataset}.csv", "a"))
    inputs.accept(accepted("rental_transactions", "day1.csv", "b"))
    return inputs


def test_rental_files_accumulate_and_a_same_name_replaces():
    inputs = full_inputs()
    assert inputs.accept(accepted("rental_transactions", "day2.csv", "c", T2)) == "added"
    assert inputs.accept(accepted("rental_transactions", "day1.csv", "b", T3)) == "unchanged"
    assert inputs.accept(accepted("rental_transactions", "day1.csv", "d", T3)) == "replaced"
    history = inputs.history()
    assert [(f.key.rsplit("/", 1)[1], f.sha256[0], f.accepted_at) for f in history] == [
        ("day1.csv", "d", T3),  # the correction keeps day1's place in the history
        ("day2.csv", "c", T2),
    ]
    assert history[0].first_accepted_at == T1


def test_the_latest_dimension_file_is_the_snapshot_whatever_its_name():
    inputs = full_inputs()
    assert inputs.accept(accepted("users", "users-2026-12-02.csv", "a", T2)) == "unchanged"
    assert inputs.accept(accepted("users", "users-2026-12-02.csv", "e", T2)) == "replaced"
    assert inputs.snapshots["users"].key == "raw/users/users-2026-12-02.csv"


def test_a_manifest_needs_every_dataset():
    inputs = Inputs()
    inputs.accept(accepted("vehicles", "v.csv", "a"))
    with pytest.raises(MissingInputs, match="locations, users, rental_transactions"):
        inputs.manifest("r1", T1, 0.05)


def test_the_fingerprint_follows_content_not_names_or_times():
    one = full_inputs().manifest("r1", T1, 0.05)
    renamed = full_inputs()
    renamed.accept(accepted("users", "users-copy.csv", "a", T2))  # same content, other name
    assert renamed.manifest("r2", T2, 0.05).fingerprint == one.fingerprint
    changed = full_inputs()
    changed.accept(accepted("users", "users.csv", "f", T2))
    assert changed.manifest("r3", T2, 0.05).fingerprint != one.fingerprint
    more = full_inputs()
    more.accept(accepted("rental_transactions", "day2.csv", "c", T2))
    assert more.manifest("r4", T2, 0.05).fingerprint != one.fingerprint
    assert full_inputs().manifest("r5", T1, 0.10).fingerprint != one.fingerprint


def test_manifests_and_inputs_survive_their_json():
    inputs = full_inputs()
    inputs.accept(accepted("rental_transactions", "day2.csv", "c", T2))
    manifest = inputs.manifest("r1", T1, 0.05)
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest and again.fingerprint == manifest.fingerprint
    assert [f.dataset for f in again.inputs] == [
        "vehicles",
        "locations",
        "users",
        "rental_transactions",
        "rental_transactions",
    ]
    assert Inputs.from_dict(inputs.to_dict()) == inputs
    assert again.of("rental_transactions")[1].staged == (
        "staged/v1/rental_transactions/" + "c" * 64 + ".parquet"
    )


def test_a_manifest_missing_a_dataset_is_refused():
    text = full_inputs().manifest("r1", T1, 0.05).to_json().replace('"users"', '"nobody"')
    with pytest.raises(ValueError, match="no file of users"):
        Manifest.from_json(text)
