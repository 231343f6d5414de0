"""The terminal shows lmforge's lines; the libraries' load reports and notices go to the run's
lmforge.log (pipelines/runs/library_logs.py)."""

from conftest import synthetic_glue, tiny_bert_checkpoint


def test_load_reports_go_to_the_log_file_not_the_terminal(tmp_path, capfd):
    from pipelines.commands.finetune import run_finetune

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    glue = synthetic_glue(tmp_path / "glue")
    capfd.readouterr()
    run_finetune("glue/sst2", str(ckpt), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                 overrides=["training.num_train_epochs=1", "data.max_seq_length=32"])
    out, err = capfd.readouterr()
    log = (tmp_path / "ft" / "sst2" / "lmforge.log").read_text()
    assert "LOAD REPORT" in log and "classifier" in log  # the new head, reported where it can be read later
    assert "LOAD REPORT" not in out + err and "Loading weights" not in err
    assert "Setting accelerator to CPU" not in out + err
    assert "sst2" in out  # lmforge's own result lines stay
