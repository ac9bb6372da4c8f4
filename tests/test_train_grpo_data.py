"""What `train grpo` reads as data: TRL rows as written, verl parquet and benchmark sources as the protocol's
prompts (the rows `data export rl --format trl` writes for them), with clear errors for anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from codevision.train.common import TrainingError
from codevision.train.config import GRPOSettings, build, load_config
from codevision.train.grpo import data_kind, load_rows, trl_protocol

EXPORT = [sys.executable, "-m", "codevision.cli", "data", "export", "rl", "--source", "synthetic:3"]


def settings(**values: object) -> GRPOSettings:
    return build(GRPOSettings, {"model": "m", "data": ["d"], "output_dir": "o", **values}, where="test")


def export(tmp_path: Path, fmt: str, *args: str) -> Path:
    path = tmp_path / f"{fmt}.parquet"
    subprocess.run([*EXPORT, *args, "--format", fmt, "-o", str(path)], check=True, capture_output=True, timeout=300)
    return path


def comparable(rows: object) -> list[tuple]:
    return [
        (row["task_id"], row["prompt"], row["answers"], row["expected_ops"], [image.size for image in row["images"]])
        for row in rows  # type: ignore[attr-defined]
    ]


def test_verl_rows_and_sources_become_the_rows_the_trl_export_writes(tmp_path: Path) -> None:
    trl = export(tmp_path, "trl", "--transforms", "rotate_90")
    verl = export(tmp_path, "verl", "--transforms", "rotate_90")
    assert (data_kind(str(trl)), data_kind(str(verl)), data_kind("synthetic:3")) == ("trl", "verl", "source")
    protocol = trl_protocol("codevision")
    written = comparable(load_rows([str(trl)], settings(), protocol))
    assert len(written) == 6
    from_verl = load_rows([str(verl)], settings(), protocol)
    assert all(isinstance(image, Image.Image) for row in from_verl for image in row["images"])
    assert comparable(from_verl) == written
    assert comparable(load_rows(["synthetic:3"], settings(data_transforms="rotate_90"), protocol)) == written
    only_turned = load_rows(["synthetic:3"], settings(data_transforms="rotate_90", data_original=False), protocol)
    assert [row["transform"] for row in only_turned] == ["rotate_90"] * 3
    mixed = load_rows([str(trl), "synthetic:2"], settings(), protocol)
    assert len(mixed) == 8


def test_data_that_is_not_training_data_is_named(tmp_path: Path) -> None:
    protocol = trl_protocol("codevision")
    with pytest.raises(TrainingError, match=r"neither a parquet file .* nor a benchmark source"):
        load_rows([str(tmp_path / "nothing.json")], settings(), protocol)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "other.parquet")
    with pytest.raises(TrainingError, match=r"holds neither TRL GRPO rows .* its columns are text"):
        load_rows([str(tmp_path / "other.parquet")], settings(), protocol)
    with pytest.raises(TrainingError, match="training data ocrbench:"):
        load_rows([f"ocrbench:{tmp_path / 'missing'}"], settings(), protocol)
    trl = export(tmp_path, "trl")
    with pytest.raises(TrainingError, match="data_transforms applies to benchmark sources"):
        load_rows([str(trl)], settings(data_transforms="rotate_90"), protocol)


def test_sources_in_a_settings_file_resolve_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "data" / "ChartQA").mkdir(parents=True)
    (tmp_path / "recipes" / "grpo.yaml").write_text(
        "model: m\noutput_dir: o\n"
        "data: [synthetic:4, 'chartqa:../data/ChartQA:train', 'tasks:../data/built', ../rows.parquet]\n"
    )
    loaded = load_config(GRPOSettings, tmp_path / "recipes" / "grpo.yaml")
    assert loaded.data == [
        "synthetic:4",
        f"chartqa:{tmp_path / 'data' / 'ChartQA'}:train",
        f"tasks:{tmp_path / 'data' / 'built'}",
        str(tmp_path / "rows.parquet"),
    ]
