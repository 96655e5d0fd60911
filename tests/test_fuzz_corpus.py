"""Every fuzzing seed and every input that ever crashed a fuzzer
(fuzz/corpus/TARGET) is replayed through the same target code, built
without libFuzzer: a regression test for what scripts/fuzz.sh found."""
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGETS = ["command", "session", "mime", "policy", "address", "auth", "milter"]


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_without_a_crash(mxgate_bin, target):
    replayer = pathlib.Path(mxgate_bin).parent / "mxgate-fuzz"
    corpus = ROOT / "fuzz" / "corpus" / target
    files = list(corpus.iterdir())
    assert files, f"no seeds in {corpus}"
    out = subprocess.run([str(replayer), target, str(corpus)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{target}: {len(files)} input(s) replayed, no crash" in out.stdout
