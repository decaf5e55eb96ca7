"""RunLogger on resume: records after the checkpoint and a partial last line are dropped."""
import json

import pytest

from jaxwm.runtime.logging import RunLogger, read_metrics


def write(path, text):
    path.write_text(text)


def test_resume_drops_records_after_the_checkpoint_and_a_partial_line(tmp_path):
    lines = [json.dumps({"step": s, "loss": float(s)}) for s in (0, 10, 20, 30)]
    write(tmp_path / "metrics.jsonl", "\n".join(lines) + '\n{"step": 40, "lo')
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [0, 10, 20, 30]
    # Restored checkpoint saved after 3 records (steps 0, 10, 20): 30 was logged after it and
    # is logged again.
    with RunLogger(str(tmp_path), keep_records=3, enable_bar=False) as logger:
        assert logger.records == 3
        logger.log(30, {"loss": 3.5})
        assert logger.records == 4     # what the next checkpoint stores
    assert [(r["step"], r["loss"]) for r in read_metrics(str(tmp_path))] == \
        [(0, 0.0), (10, 10.0), (20, 20.0), (30, 3.5)]


def test_records_are_counted_not_compared_by_step(tmp_path):
    # FOWM logs offline updates, then online env steps from 0 again: steps are not monotonic
    lines = [json.dumps({"step": s}) for s in (0, 500, 1000, 0, 125)]
    write(tmp_path / "metrics.jsonl", "\n".join(lines) + "\n")
    RunLogger(str(tmp_path), keep_records=4, enable_bar=False).close()
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [0, 500, 1000, 0]


def test_keep_records_none_keeps_records_and_fresh_run_drops_all(tmp_path):
    write(tmp_path / "metrics.jsonl", '{"step": 0}\n{"step": 5}\n')
    RunLogger(str(tmp_path), enable_bar=False).close()
    assert len(read_metrics(str(tmp_path))) == 2
    RunLogger(str(tmp_path), keep_records=0, enable_bar=False).close()   # no checkpoint
    assert read_metrics(str(tmp_path)) == []


def test_a_bad_line_before_the_last_names_the_line(tmp_path):
    write(tmp_path / "metrics.jsonl", '{"step": 0}\ngarbage\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        read_metrics(str(tmp_path))
