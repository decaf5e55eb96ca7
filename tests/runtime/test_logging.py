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
    # Restored checkpoint at step 20: 30 was logged after it and is logged again.
    with RunLogger(str(tmp_path), keep_through=20, enable_bar=False) as logger:
        logger.log(30, {"loss": 3.5})
    assert [(r["step"], r["loss"]) for r in read_metrics(str(tmp_path))] == \
        [(0, 0.0), (10, 10.0), (20, 20.0), (30, 3.5)]


def test_keep_through_none_keeps_records_and_fresh_run_drops_all(tmp_path):
    write(tmp_path / "metrics.jsonl", '{"step": 0}\n{"step": 5}\n')
    RunLogger(str(tmp_path), enable_bar=False).close()
    assert len(read_metrics(str(tmp_path))) == 2
    RunLogger(str(tmp_path), keep_through=-1, enable_bar=False).close()   # no checkpoint
    assert read_metrics(str(tmp_path)) == []


def test_a_bad_line_before_the_last_names_the_line(tmp_path):
    write(tmp_path / "metrics.jsonl", '{"step": 0}\ngarbage\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        read_metrics(str(tmp_path))
