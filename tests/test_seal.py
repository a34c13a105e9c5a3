"""Sealed reasoning: blobs open only under the key that sealed them; the key is made once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from diglot.proxy.seal import KEY_FILE, Sealer, SealError
from diglot.translators.errors import RequestError


def test_a_blob_opens_under_the_same_secret_only(tmp_path: Path) -> None:
    one, same, other = (Sealer(s, tmp_path) for s in ("alpha", "alpha", "beta"))
    blob = one.seal("Thinking about Paris.", "t1")
    assert "Paris" not in blob
    assert same.open(blob, "t1") == "Thinking about Paris."
    assert one.seal("Thinking about Paris.", "t1") != blob  # a fresh nonce every time
    with pytest.raises(SealError):
        other.open(blob, "t1")
    with pytest.raises(SealError):
        same.open(blob, "t2")
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[:-1],
        lambda blob: blob[:10],
        lambda blob: blob[:30] + ("x" if blob[30] != "x" else "y") + blob[31:],
        lambda blob: "",
        lambda blob: "***",
        lambda blob: "é" + blob,
    ],
)
def test_damaged_blobs_do_not_open(tmp_path: Path, damage: object) -> None:
    sealer = Sealer("alpha", tmp_path)
    blob = sealer.seal("secret thoughts", "t1")
    with pytest.raises(SealError):
        sealer.open(damage(blob), "t1")  # type: ignore[operator]


def test_without_a_secret_the_key_is_made_once_in_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    blob = Sealer(None, state).seal("kept", "t1")
    key = state / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert [path.name for path in state.iterdir()] == [KEY_FILE]
    assert Sealer(None, state).open(blob, "t1") == "kept"


def test_an_unusable_state_dir_is_a_503(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RequestError) as caught:
        Sealer(None, blocker / "state").seal("x", "t1")
    assert caught.value.status == 503
    assert caught.value.code == "seal_key_unavailable"
