"""Word identity hashes: stable across processes, case-blind, spread over the buckets."""
import subprocess
import sys

from mqspn.model.word_hash import word_hash, word_hashes


def test_the_hash_is_the_same_in_another_process():
    # Python's own hash() is salted per process; a saved model's embedding rows must keep their words.
    code = "from mqspn.model.word_hash import word_hash; print(word_hash('Kellan'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == word_hash("Kellan")


def test_case_is_ignored_and_words_differ():
    assert word_hash("Kellan") == word_hash("KELLAN") == word_hash("kellan")
    assert word_hash("Kellan") != word_hash("Kellam")
    assert word_hashes(["RT", "rt", "Paris"]) == [word_hash("rt")] * 2 + [word_hash("paris")]


def test_hashes_are_non_negative_and_spread_over_buckets():
    words = [f"w{i}" for i in range(2000)]
    hashes = word_hashes(words)
    assert min(hashes) >= 0 and max(hashes) < 2 ** 31
    assert len({h % 64 for h in hashes}) == 64  # 2000 words leave no bucket of 64 empty
