"""A disk that refuses a write (full, read-only) ends training and export with one line naming the file, the reason
and, in training, the newest complete checkpoint; no temporary file is left, MindSpore's own included, and the run
resumes once there is space. Small tmpfs mounts (root) stand in for the disks."""
import os
import subprocess
import sys

import pytest

import train
from export import main as export_main
from src.atomic_files import WriteError
from src.checkpoint import save_checkpoint
from src.models import create_model
from tests.engine_fixtures import tiny_config, write_config
from tests.test_export import SMALL, SMALL_FLAGS, random_bn_statistics, write_checkpoint
from tests.test_run_folder import CHILD, QUICK
from tests.tmpfs_fixtures import fill, hidden_files, needs_root, tmpfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = needs_root


def test_a_full_disk_in_training_ends_in_one_line_and_the_run_resumes_once_there_is_space(tmp_path, capsys):
    """width 64: a checkpoint of ~0.9 MB and best weights of ~0.3 MB, so the disk fills inside MindSpore's writer."""
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        cfg = tiny_config(tmp_path, **QUICK, width=64, output_dir=str(disk / "run"))
        config = write_config(cfg, tmp_path / "cfg.yaml")
        train.main(["--config", config])
        run = disk / "run"
        filler = fill(disk, leave=200_000)
        result = subprocess.run([sys.executable, "-c", CHILD, "--config", config, "--resume", "auto", "--epochs", "2"],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"train.py: error: cannot write {run}/"), result.stderr
        assert lines[0].endswith(f".ckpt: No space left on device; the newest complete checkpoint is "
                                 f"{run}/epoch_0001.ckpt (continue with --resume auto once there is space)")
        assert hidden_files(run) == []
        os.remove(filler)
        capsys.readouterr()
        train.main(["--config", config, "--resume", "auto", "--epochs", "2"])
        assert "1 of 2 epochs done" in capsys.readouterr().out
        assert os.path.isfile(run / "epoch_0002.ckpt") and hidden_files(run) == []


@pytest.mark.parametrize("file_format", ["mindir", "onnx"])
def test_export_to_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, file_format):
    write_checkpoint(tmp_path / "w.ckpt", "ghostnet_050", **SMALL)  # ~5 MB exported: more than the disk holds
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        output = disk / f"g.{file_format}"
        with pytest.raises(WriteError, match=f"cannot write {output}: No space left on device"):
            export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnet_050", "--output", str(output),
                         "--file_format", file_format, *SMALL_FLAGS])
        assert os.listdir(disk) == []


def test_export_to_a_read_only_folder_stops_in_one_line(tmp_path):
    net = random_bn_statistics(create_model("ghostnet_050", **SMALL))  # with CRCs: MindSpore warns of none
    save_checkpoint(str(tmp_path / "w.ckpt"), {p.name: p for p in net.get_parameters()})
    with tmpfs(tmp_path / "disk", read_only=True) as disk:
        result = subprocess.run([sys.executable, "export.py", "--ckpt_path", str(tmp_path / "w.ckpt"), "--model",
                                 "ghostnet_050", "--output", str(disk / "g.mindir"), *SMALL_FLAGS], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"export.py: error: cannot write {disk / 'g.mindir'}: Read-only file system"]
