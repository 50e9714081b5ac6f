"""Building the pretraining set from corpora as distributed: media containers (PyAV), resampling, short clips,
excluded evaluation utterances, per-corpus hours, resume."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.cli import main as cli
from emotion2vec.io.audio import audio_info, read_audio
from emotion2vec.io.manifests import read_pretrain_manifest

av = pytest.importorskip("av", reason="PyAV (the media extra) is not installed")
REPO = Path(__file__).resolve().parents[1]


def _write_media(path: Path, seconds: float, rate: int = 48000, fmt: str = "mp4", channels: int = 2) -> np.ndarray:
    """An AAC stream in an mp4 / m4a container, written with PyAV. Returns the mono signal it encodes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    container = av.open(str(path), mode="w", format={"mp4": "mp4", "m4a": "ipod"}[fmt])
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "stereo" if channels == 2 else "mono"
    frame = av.AudioFrame.from_ndarray(np.stack([mono] * channels), format="fltp", layout=stream.layout.name)
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return mono


def test_media_containers_decode_like_their_signal(tmp_path):
    for fmt in ("mp4", "m4a"):
        mono = _write_media(tmp_path / f"clip.{fmt}", 1.0, fmt=fmt)
        info = audio_info(tmp_path / f"clip.{fmt}")
        wav, rate = read_audio(tmp_path / f"clip.{fmt}")
        assert (info.sample_rate, info.channels, rate) == (48000, 2, 48000)
        assert abs(len(wav) - len(mono)) <= 2048  # the encoder's priming / padding frames
        # the decoded signal is the encoded one (AAC is lossy: compare envelopes around the middle)
        mid = slice(12000, 36000)
        assert abs(np.sqrt(np.mean(wav[mid] ** 2)) - np.sqrt(np.mean(mono[mid] ** 2))) < 0.02


def _tree(tmp_path: Path) -> dict[str, Path]:
    """Three tiny 'corpora' as distributed: MELD-like .mp4, MEAD-like .m4a, IEMOCAP-like 16 kHz wav in sessions."""
    meld, mead, iemocap = tmp_path / "MELD.Raw", tmp_path / "MEAD", tmp_path / "IEMOCAP"
    for i in range(3):
        _write_media(meld / "train_splits" / f"dia{i}_utt0.mp4", 1.0 + i * 0.5)
    _write_media(meld / "train_splits" / "dia9_utt9.mp4", 0.2)  # shorter than the crop minimum
    for i in range(2):
        _write_media(mead / "M003" / "audio" / "angry" / "level_1" / f"00{i}.m4a", 1.2, rate=44100, fmt="m4a")
    rng = np.random.default_rng(0)
    for s in (1, 2):
        for i in range(2):
            p = iemocap / f"Session{s}" / "sentences" / "wav" / f"Ses0{s}F_impro01" / f"Ses0{s}F_impro01_F00{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    (meld / "train_splits" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real file")
    return {"meld": meld, "mead": mead, "iemocap": iemocap}


def test_the_pretraining_set_from_corpora_as_distributed(tmp_path, capsys):
    roots = _tree(tmp_path)
    exclude = tmp_path / "test_set.scp"  # an evaluation utterance to keep out of pretraining
    exclude.write_text(f"Ses02F_impro01_F001 {roots['iemocap']}/Session2/sentences/wav/Ses02F_impro01/"
                       f"Ses02F_impro01_F001.wav\n")
    args = ["manifest", f"meld={roots['meld']}", f"mead={roots['mead']}",
            *(f"iemocap={roots['iemocap']}/Session{s}/sentences/wav" for s in (1, 2)),
            "--out", str(tmp_path / "man"), "--resample-to", str(tmp_path / "16k"), "--exclude", str(exclude)]
    assert cli(args) == 1  # the broken container is listed, the rest is written
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.err and "clip(s) shorter than 0.5 s left out" in captured.err
    root, entries = read_pretrain_manifest(tmp_path / "man" / "train.tsv")
    names = sorted(Path(p).name for p, _ in entries)
    assert names == ["000.flac", "001.flac", "Ses01F_impro01_F000.wav", "Ses01F_impro01_F001.wav",
                     "Ses02F_impro01_F000.wav", "dia0_utt0.flac", "dia1_utt0.flac", "dia2_utt0.flac"]
    for p, n in entries:
        info = audio_info(root / p)
        assert (info.sample_rate, info.channels, info.frames) == (16000, 1, n)
    table = (tmp_path / "man" / "hours.md").read_text()
    assert table in captured.out
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["meld"].startswith("| meld | 3 |") and rows["meld"].endswith("| 4 | 1 | 0 | 1 |")
    assert rows["mead"].startswith("| mead | 2 |") and rows["iemocap"].startswith("| iemocap | 3 |")
    assert rows["iemocap"].endswith("| 0 | 0 | 1 | 0 |")  # the excluded test utterance
    seconds = sum(n for _, n in entries) / 16000
    assert f"| **total** | 8 | {seconds / 3600:.3f} |" in table
    # a re-run reuses every conversion
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "16k").rglob("*.flac")}
    assert cli(args) == 1
    assert "converted 0 (reused 6 converted earlier)" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "16k").rglob("*.flac")} == stamps


def test_exclude_rows_of_a_data_tsv_by_column(tmp_path, capsys):
    from emotion2vec.io.manifests import write_data_tsv

    roots = _tree(tmp_path)
    (roots["meld"] / "train_splits" / "broken.mp4").unlink()
    wavs = sorted((roots["iemocap"]).rglob("*.wav"))
    write_data_tsv(tmp_path / "data.tsv", [{"key": w.stem, "path": str(w), "label": "neutral", "speaker": w.stem[:6],
                                            "gender": "F", "duration": 1.0, "session": w.stem[:5]} for w in wavs])
    args = ["manifest", f"iemocap={roots['iemocap']}", "--out", str(tmp_path / "man"), "--exclude",
            f"{tmp_path / 'data.tsv'}:session=Ses02"]
    assert cli(args) == 0
    _, entries = read_pretrain_manifest(tmp_path / "man" / "train.tsv")
    assert sorted(Path(p).stem for p, _ in entries) == ["Ses01F_impro01_F000", "Ses01F_impro01_F001"]
    assert cli(args[:-1] + [f"{tmp_path / 'data.tsv'}:room=3"]) == 2
    assert "has no column 'room'" in capsys.readouterr().err
    assert cli(args[:-1] + [f"{tmp_path / 'data.tsv'}:session=Ses09"]) == 2
    assert "no row of" in capsys.readouterr().err


def test_media_without_resample_to_is_refused_by_name(tmp_path):
    _write_media(tmp_path / "in" / "a.mp4", 1.0, rate=16000, channels=1)
    assert cli(["manifest", str(tmp_path / "in"), "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists()


def test_the_recipe_builds_the_set(tmp_path):
    roots = _tree(tmp_path)
    (roots["meld"] / "train_splits" / "broken.mp4").unlink()
    env = dict(os.environ, IEMOCAP=str(roots["iemocap"]), MELD=str(roots["meld"]), MEAD=str(roots["mead"]),
               OUT=str(tmp_path / "man"), AUDIO16K=str(tmp_path / "16k"), PYTHON=str(Path(os.sys.executable)))
    res = subprocess.run(["bash", str(REPO / "recipes" / "pretrain_data.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    table = (tmp_path / "man" / "hours.md").read_text()
    assert "| iemocap | 4 |" in table and "| meld | 3 |" in table and "| mead | 2 |" in table


def test_every_ablation_row_is_a_valid_pretraining_command(tmp_path, monkeypatch):
    """recipes/ablation.sh: each row of the paper's Tables 8, 10 and 11 composes, passes the configuration checks and
    sets what it names (printed, not run: the rows need the 262 h set and GPUs)."""
    from emotion2vec.pretrain.launch import compose, config_problems

    (tmp_path / "man").mkdir()
    (tmp_path / "man" / "train.tsv").write_text(f"{tmp_path}\nx.wav\t16000\n")
    rows = subprocess.run(["bash", str(REPO / "recipes" / "ablation.sh"), "--list"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert len(rows) == 13
    monkeypatch.chdir(tmp_path)  # the start checkpoints the rows name, where the recipe expects them
    for start in {o.split("=", 1)[1] for line in rows for o in line.split()[1:] if o.startswith("model.init_from=")}:
        if start != "null":
            Path(start).parent.mkdir(parents=True, exist_ok=True)
            Path(start).touch()
    cpu = ["common.fp16=false", "distributed_training.distributed_world_size=1", f"task.data={tmp_path / 'man'}"]
    for line in rows:  # every row, in process
        name, *overrides = line.split()
        cfg = compose("emotion2vec_base", overrides + cpu)
        assert config_problems(cfg, cuda_available=False) == [], name
        for o in overrides:
            key, value = o.split("=")
            got = cfg.model[key.split(".")[1]]
            assert str(got) == value or (value == "null" and got is None) or float(got) == float(value), (name, o)
    env = dict(os.environ, DATA=str(tmp_path / "man"), PRINT="1", PYTHON=str(Path(os.sys.executable)))
    for name in ("init_cold_start", "loss_frame_only", "alpha_10"):  # and the launch line, through the recipe
        res = subprocess.run(["bash", str(REPO / "recipes" / "ablation.sh"), name, *cpu[:2]], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (name, res.stderr[-1500:])
        assert "--config-name emotion2vec_base" in res.stdout and f"outputs/ablation/{name}" in res.stdout
    # the official GPU settings on a machine without a GPU (a login node): the line for the GPU node is printed
    res = subprocess.run(["bash", str(REPO / "recipes" / "ablation.sh"), "loss_both"], capture_output=True,
                         text=True, timeout=120, env=dict(env, CUDA_VISIBLE_DEVICES=""))
    assert res.returncode == 0, res.stderr[-1500:]
    assert "--config-name emotion2vec_base" in res.stdout and "outputs/ablation/loss_both" in res.stdout
    assert "note: on this machine: distributed_training.distributed_world_size=4 but this machine has 0 GPU(s)" \
        in res.stderr
