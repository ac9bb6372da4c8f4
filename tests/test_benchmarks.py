"""Benchmark loaders on tiny fixtures in each official layout, their errors, and the synthetic generator."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from codevision.benchmarks import (
    BENCHMARKS,
    SPEC_FORMS,
    SYNTHETIC_KINDS,
    BenchmarkError,
    HRBench,
    MissingFileError,
    RowError,
    SyntheticBenchmark,
    VStar,
    load_benchmark,
    synthetic_task,
)
from codevision.benchmarks.base import LETTERS, format_choices
from codevision.eval.scorer import rule_name
from codevision.task import Task, TransformRecord
from codevision.transforms.ops import expected_ops

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the real annotation files are not available")


@pytest.fixture(autouse=True)
def _private_image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaders given no cache_dir write embedded images under $CODEVISION_CACHE: keep that in the test's folder."""
    monkeypatch.setenv("CODEVISION_CACHE", str(tmp_path / "default-cache"))


@cache
def ocrbench_items() -> list[dict[str, Any]]:
    return json.loads((DATA / "ocrbench" / "OCRBench.json").read_text(encoding="utf-8"))


@cache
def mathvista_items() -> dict[str, dict[str, Any]]:
    return json.loads((DATA / "mathvista" / "testmini.json").read_text(encoding="utf-8"))


def image_bytes(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (24, 16), fmt: str = "JPEG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def placeholder(path: Path, color: tuple[int, int, int] = (90, 120, 150)) -> None:
    """A stand-in image at ``path`` (the real benchmark images are distributed separately)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)


def fields(task: Task) -> dict[str, Any]:
    return task.model_dump()


# ---------------------------------------------------------------------------------------- OCRBench
def ocrbench_layout(root: Path, items: list[dict[str, Any]]) -> Path:
    """``OCRBench/OCRBench.json`` and ``OCRBench_Images/<image_path>``, as the release unpacks."""
    annotation = root / "OCRBench" / "OCRBench.json"
    annotation.parent.mkdir(parents=True)
    annotation.write_text(json.dumps(items), encoding="utf-8")
    for item in items:
        if isinstance(item.get("image_path"), str):
            placeholder(root / "OCRBench_Images" / item["image_path"])
    return annotation


@needs_data
def test_ocrbench_fields_from_real_entries(tmp_path: Path) -> None:
    items = [ocrbench_items()[i] for i in (0, 300, 900)]
    assert isinstance(items[0]["answers"], str) and isinstance(items[1]["answers"], list)
    bench = load_benchmark(f"ocrbench:{ocrbench_layout(tmp_path, items).parent}")
    assert len(bench) == 3
    assert bench.base_dir == tmp_path / "OCRBench_Images"
    tasks = list(bench)
    assert fields(tasks[0]) == fields(
        Task(
            id="IIIT5K-2843",
            images=["IIIT5K/test/918_1.png"],
            question="what is written in the image?",
            answers=["CENTRE"],
            source="ocrbench",
            metadata={"dataset_name": "IIIT5K", "type": "Regular Text Recognition", "ocrbench_id": 2843, "index": 0},
        )
    )
    assert tasks[1].id == "STVQA-7"
    assert tasks[1].answers == ["Chatswood Epping", "Chatswood, Epping"]
    assert tasks[2].metadata["dataset_name"] == "HME100k"
    assert tasks[2].answers == items[2]["answers"]  # kept exactly (trailing newlines included): the scorer normalises
    assert tasks[2].load_images(bench.base_dir)[0].size == (8, 6)


@needs_data
def test_ocrbench_whole_real_file(tmp_path: Path) -> None:
    bench = load_benchmark(f"ocrbench:{ocrbench_layout(tmp_path, ocrbench_items())}")
    tasks = list(bench)
    assert len(tasks) == len(bench) == 1000
    assert len({t.id for t in tasks}) == 1000  # the file's ids repeat across datasets; task ids do not
    types = Counter(t.metadata["type"] for t in tasks)
    assert types["Scene Text-centric VQA"] == types["Doc-oriented VQA"] == types["Key Information Extraction"] == 200
    assert types["Handwritten Mathematical Expression Recognition"] == 100
    assert sum(len(t.answers) > 1 for t in tasks) > 100


@needs_data
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda item: item.pop("question"),
            "row 1: id 'IIIT5K-184': field 'question': missing; expected a non-empty string",
        ),
        (
            lambda item: item.update(answers=5),
            "row 1: id 'IIIT5K-184': field 'answers': expected a string or a non-empty list of strings, got int 5",
        ),
        (lambda item: item.update(answers=[]), "field 'answers': is an empty list"),
        (lambda item: item.update(id="x7"), "row 1: field 'id': expected an integer, got str 'x7'"),
        (lambda item: item.update(image_path="IIIT5K/none.png"), "field 'image_path': image file "),
    ],
)
def test_ocrbench_malformed_row_names_file_row_and_field(tmp_path: Path, change: Any, expected: str) -> None:
    items = [dict(item) for item in ocrbench_items()[:3]]
    annotation = ocrbench_layout(tmp_path, items)
    change(items[1])
    annotation.write_text(json.dumps(items), encoding="utf-8")  # the image of the changed path is never made
    with pytest.raises(RowError) as caught:
        list(load_benchmark(f"ocrbench:{annotation}"))
    assert str(caught.value).startswith(f"{annotation}: ")
    assert expected in str(caught.value)
    assert caught.value.row == 1

    skipping = load_benchmark(f"ocrbench:{annotation}", on_error="skip")
    assert len(list(skipping)) == 2
    assert len(skipping.skipped) == 1
    assert skipping.skipped[0].row == 1


@needs_data
def test_ocrbench_missing_files_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"OCRBench annotation file .*OCRBench\.json does not exist"):
        load_benchmark(f"ocrbench:{tmp_path}")
    annotation = ocrbench_layout(tmp_path, [ocrbench_items()[0], ocrbench_items()[0]])
    with pytest.raises(RowError, match=r"row 1: id 'IIIT5K-2843': field 'id': duplicate id .* \(first at row 0\)"):
        list(load_benchmark(f"ocrbench:{annotation}"))
    annotation.write_text('[{"id": 1,', encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"is not valid JSON: .* at line 1 column"):
        load_benchmark(f"ocrbench:{annotation}")
    annotation.write_text("{}", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="expected a list of items at the top level, got dict"):
        load_benchmark(f"ocrbench:{annotation}")


# --------------------------------------------------------------------------------------- MathVista
def mathvista_layout(root: Path, items: dict[str, dict[str, Any]]) -> Path:
    """``data/testmini.json`` and ``data/images/<pid>.jpg``."""
    annotation = root / "data" / "testmini.json"
    annotation.parent.mkdir(parents=True)
    annotation.write_text(json.dumps(items), encoding="utf-8")
    for item in items.values():
        placeholder(annotation.parent / item["image"])
    return annotation


@needs_data
def test_mathvista_fields_from_real_entries(tmp_path: Path) -> None:
    real = mathvista_items()
    items = {pid: real[pid] for pid in ("1", "2", "7", "225")}
    bench = load_benchmark(f"mathvista:{mathvista_layout(tmp_path, items).parent}")
    assert len(bench) == 4
    tasks = {t.id: t for t in bench}

    choice = tasks["7"]
    assert choice.question == (
        "What time is shown? Answer by typing a time word, not a number. It is (_) after eight.\n"
        "Options:\n(A) half\n(B) quarter\n(C) o'clock\n(D) quarter to\n(E) quarter past\n"
        "Answer with the option's letter."
    )
    assert choice.images == ["images/7.jpg"]
    assert choice.answers == ["quarter"]
    assert choice.source == "mathvista"
    assert choice.metadata == {
        **real["7"]["metadata"],
        "question_type": "multi_choice",
        "answer_type": "text",
        "precision": None,
        "choices": ["half", "quarter", "o'clock", "quarter to", "quarter past"],
        "answer_letter": "B",
        "unit": None,
        "raw_question": real["7"]["question"],
    }
    assert tasks["2"].question == "what is the total volume of the measuring cup? (Unit: g)\nAnswer with an integer."
    assert tasks["2"].metadata["unit"] == "g"
    assert tasks["1"].question.endswith("\nAnswer with a number with 1 decimal place.")
    assert (tasks["1"].answers, tasks["1"].metadata["precision"], tasks["1"].metadata["answer_type"]) == (
        ["1.2"],
        1,
        "float",
    )
    assert tasks["225"].metadata["answer_type"] == "list"
    assert tasks["225"].question.endswith("\nAnswer with a Python list.")


@needs_data
def test_mathvista_whole_real_file(tmp_path: Path) -> None:
    tasks = list(load_benchmark(f"mathvista:{mathvista_layout(tmp_path, mathvista_items())}"))
    assert len(tasks) == 1000
    kinds = Counter(t.metadata["question_type"] for t in tasks)
    assert kinds == {"multi_choice": 540, "free_form": 460}
    for task in tasks:
        if task.metadata["question_type"] == "multi_choice":
            assert task.metadata["choices"][LETTERS.index(task.metadata["answer_letter"])] == task.answers[0]


@needs_data
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda item: item.update(answer="noon"), "field 'answer': 'noon' is not one of the choices"),
        (lambda item: item.update(question_type="open"), "field 'question_type': is 'open'; expected one of"),
        (lambda item: item.update(choices="half"), "field 'choices': expected a list of strings with at least 2 items"),
        (lambda item: item.update(pid="8"), "field 'pid': is str '8'; expected the key the item is stored under, '7'"),
        (lambda item: item.update(image="images/missing.jpg"), "field 'image': image file "),
        (lambda item: item.update(precision="one"), "field 'precision': expected an integer, got str 'one'"),
    ],
)
def test_mathvista_malformed_item(tmp_path: Path, change: Any, expected: str) -> None:
    items = {pid: dict(mathvista_items()[pid]) for pid in ("2", "7")}
    annotation = mathvista_layout(tmp_path, items)
    change(items["7"])
    annotation.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(RowError, match="row 7") as caught:
        list(load_benchmark(f"mathvista:{annotation}"))
    assert expected in str(caught.value)
    skipping = load_benchmark(f"mathvista:{annotation}", on_error="skip")
    assert [t.id for t in skipping] == ["2"]
    assert [e.row for e in skipping.skipped] == ["7"]


# --------------------------------------------------------------------------------------------- V*
VSTAR_ITEMS = {
    "direct_attributes/sa_10": {
        "target_object": ["glove"],
        "bbox": [[10, 20, 30, 40]],
        "question": "What is the color of the glove?",
        "options": ["white", "black", "red", "blue"],
    },
    "direct_attributes/sa_11": {
        "target_object": ["cup"],
        "bbox": [[0, 0, 5.5, 4]],
        "question": "What is the material of the cup?",
        "options": ["glass", "paper", "metal", "wood"],
    },
    "relative_position/sa_20": {
        "target_object": ["dog", "bench"],
        "bbox": [[1, 2, 3, 4], [5, 6, 7, 8]],
        "question": "Is the dog on the left or right side of the bench?",
        "options": ["left", "right"],
    },
}


def vstar_layout(root: Path, items: dict[str, Any] = VSTAR_ITEMS) -> Path:
    """``vstar_bench/{direct_attributes,relative_position}/X.jpg + X.json``, and an extra folder."""
    bench = root / "vstar_bench"
    for name, item in items.items():
        placeholder(bench / f"{name}.jpg")
        (bench / f"{name}.json").write_text(json.dumps(item), encoding="utf-8")
    placeholder(bench / "OCR" / "extra.jpg")  # not part of the 191 items
    (bench / "OCR" / "extra.json").write_text(json.dumps(items["direct_attributes/sa_10"]), encoding="utf-8")
    return bench


def test_vstar_fields_boxes_and_shuffled_options(tmp_path: Path) -> None:
    root = vstar_layout(tmp_path)
    bench = load_benchmark(f"vstar:{root}")
    assert len(bench) == 3
    tasks = list(bench)
    assert [t.id for t in tasks] == ["direct_attributes-sa_10", "direct_attributes-sa_11", "relative_position-sa_20"]
    glove = tasks[0]
    assert glove.images == ["direct_attributes/sa_10.jpg"]
    assert glove.bboxes == [(10.0, 20.0, 40.0, 60.0)]
    assert tasks[2].bboxes == [(1.0, 2.0, 4.0, 6.0), (5.0, 6.0, 12.0, 14.0)]
    assert glove.answers == ["white"]
    assert glove.source == "vstar"
    meta = glove.metadata
    assert meta["options"] == ["white", "black", "red", "blue"]
    assert sorted(meta["choices"]) == sorted(meta["options"])
    assert meta["choices"][LETTERS.index(meta["answer_letter"])] == "white"
    assert meta["target_object"] == ["glove"] and meta["category"] == "direct_attributes"
    assert glove.question == format_choices("What is the color of the glove?", meta["choices"])
    assert glove.load_images(bench.base_dir)[0].size == (8, 6)

    assert [fields(t) for t in load_benchmark(f"vstar:{root}")] == [fields(t) for t in tasks]  # stable order
    letters = {t.metadata["answer_letter"] for s in range(6) for t in VStar(root, seed=s)}
    assert len(letters) > 1  # the correct option is not always shown first
    unshuffled = list(VStar(root, shuffle_options=False))
    assert [t.metadata["answer_letter"] for t in unshuffled] == ["A", "A", "A"]
    assert unshuffled[0].metadata["choices"] == unshuffled[0].metadata["options"]
    assert len(VStar(root / "relative_position")) == 1  # one category folder


def test_vstar_shuffle_agrees_with_the_scorer(tmp_path: Path) -> None:
    aggregate = pytest.importorskip("codevision.scoring.aggregate")
    for seed in (0, 5):
        for task in VStar(vstar_layout(tmp_path / str(seed)), seed=seed):
            shown = aggregate.shuffle_options(task.metadata["options"], key=task.id, seed=seed)
            assert list(shown.options) == task.metadata["choices"]
            assert shown.answer == task.metadata["answer_letter"]


def test_vstar_malformed_pairs(tmp_path: Path) -> None:
    root = vstar_layout(tmp_path)
    folder = root / "direct_attributes"
    (folder / "sa_10.jpg").unlink()
    placeholder(folder / "sa_12.png")
    item = dict(VSTAR_ITEMS["direct_attributes/sa_11"], bbox=[[1, 2, 3]])
    (folder / "sa_11.json").write_text(json.dumps(item), encoding="utf-8")
    bench = load_benchmark(f"vstar:{root}", on_error="skip")
    assert [t.id for t in bench] == ["relative_position-sa_20"]
    problems = {e.task_id: str(e) for e in bench.skipped}
    assert problems["direct_attributes-sa_10"].endswith(f"has no image; expected {folder}/sa_10.jpg (or .jpeg, .png)")
    assert problems["direct_attributes-sa_11"] == (
        f"{folder}/sa_11.json: id 'direct_attributes-sa_11': field 'bbox': "
        "expected 4 numbers [x, y, width, height], got list [1, 2, 3]"
    )
    assert problems["direct_attributes-sa_12"].endswith(f"has no annotation; expected {folder}/sa_12.json")
    placeholder(folder / "sa_10.jpg")
    (folder / "sa_11.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RowError, match=r"sa_11.json: id 'direct_attributes-sa_11': is not valid JSON"):
        list(VStar(folder))


# ---------------------------------------------------------------------------------------- HR-Bench
HR_COLUMNS = ["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"]


def hr_rows() -> list[dict[str, Any]]:
    red, green = image_bytes((220, 20, 20), (40, 30)), image_bytes((20, 200, 20), (30, 40))
    question = 'What does the "sign"\tsay?\nLook closely.'  # quotes, a tab and a newline survive the TSV
    rows = []
    for cycle in range(4):
        options = ["STOP", "GO", "SLOW", "WAIT"]
        options = options[cycle:] + options[:cycle]
        rows.append(
            {
                "index": cycle,
                "question": question,
                "answer": LETTERS[options.index("STOP")],
                "category": "single",
                **dict(zip("ABCD", options, strict=True)),
                "cycle_category": cycle,
                "image": base64.b64encode(red).decode() if cycle == 0 else "0",  # by reference, as VLMEvalKit writes
            }
        )
    rows.append(
        {
            "index": 4,
            "question": "Which colour is the car?",
            "answer": "B",
            "category": "cross",
            "A": "red",
            "B": "green",
            "C": None,
            "D": None,
            "cycle_category": 0,
            "image": base64.b64encode(green).decode(),
        }
    )
    return rows


def write_tsv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(HR_COLUMNS)
        for row in rows:
            writer.writerow(["" if row[c] is None else row[c] for c in HR_COLUMNS])
    return path


def test_hrbench_tsv_streams_rows_and_decodes_images_into_the_cache(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    bench = load_benchmark(f"hrbench:{write_tsv(tmp_path / 'hr_bench_4k.tsv', hr_rows())}", cache_dir=cache_dir)
    with pytest.raises(TypeError, match="unknown until it is read"):
        len(bench)  # a 2 GB TSV is not counted up front
    first = next(iter(bench))
    assert len(list(cache_dir.rglob("*.jpg"))) == 1  # images are decoded as rows are reached
    assert first.id == "0"
    assert first.source == "hrbench_4k"
    assert first.answers == ["A"]
    assert first.question == format_choices('What does the "sign"\tsay?\nLook closely.', ["STOP", "GO", "SLOW", "WAIT"])
    assert first.metadata == {
        "category": "single",
        "cycle_category": 0,
        "choices": ["STOP", "GO", "SLOW", "WAIT"],
        "answer_letter": "A",
        "raw_question": 'What does the "sign"\tsay?\nLook closely.',
        "index": 0,
    }
    tasks = list(bench)
    assert [t.answers[0] for t in tasks] == ["A", "D", "C", "B", "B"]
    assert [t.metadata["cycle_category"] for t in tasks] == [0, 1, 2, 3, 0]
    assert len({t.images[0] for t in tasks[:4]}) == 1  # rows 1-3 refer to row 0's image
    assert tasks[4].metadata["choices"] == ["red", "green"]
    image = tasks[4].load_images()[0]
    assert image.size == (30, 40) and Path(tasks[4].images[0]).is_relative_to(cache_dir)
    assert np.asarray(image)[20, 15, 1] > 150


def test_hrbench_parquet_variant_gives_the_same_tasks(tmp_path: Path) -> None:
    rows = hr_rows()
    for row in rows:
        row["cycle_category"] = str(row["cycle_category"])  # a string column in the released parquet
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hr_bench_4k.parquet")
    write_tsv(tmp_path / "hr_bench_4k.tsv", rows)
    from_parquet = load_benchmark(f"hrbench:{tmp_path / 'hr_bench_4k.parquet'}", cache_dir=tmp_path / "c")
    assert len(from_parquet) == 5
    from_tsv = HRBench(tmp_path / "hr_bench_4k.tsv", cache_dir=tmp_path / "c")
    assert [fields(t) for t in from_parquet] == [fields(t) for t in from_tsv]


@pytest.mark.parametrize(
    ("row", "change", "expected"),
    [
        (4, {"image": "bm90IGFuIGltYWdl!"}, "row 4: field 'image': is not valid base64"),
        (4, {"image": base64.b64encode(b"not an image").decode()}, "field 'image': the bytes are not an image"),
        (2, {"answer": "E"}, "row 2: field 'answer': is 'E'; expected one of the option letters ABCD"),
        (3, {"index": "three"}, "row 3: field 'index': expected an integer, got str 'three'"),
        (1, {"image": "7"}, "field 'image': refers to the image of index 7, which no earlier row has"),
        (4, {"question": None}, "row 4: field 'question': is empty; expected a non-empty string"),
    ],
)
def test_hrbench_malformed_rows(tmp_path: Path, row: int, change: dict[str, Any], expected: str) -> None:
    rows = hr_rows()
    rows[row].update(change)
    tsv = write_tsv(tmp_path / "hr_bench_8k.tsv", rows)
    with pytest.raises(RowError) as caught:
        list(HRBench(tsv, cache_dir=tmp_path / "cache"))
    assert str(caught.value).startswith(f"{tsv}: ")
    assert expected in str(caught.value)
    skipping = HRBench(tsv, cache_dir=tmp_path / "cache", on_error="skip")
    assert len(list(skipping)) == 4 and [e.row for e in skipping.skipped] == [row]


def test_hrbench_file_level_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "hr_bench_4k.tsv"
    tsv.write_text("index\tquestion\tanswer\n0\tq\tA\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"lacks the columns \['category', 'A', 'B', 'cycle_category', 'image'\]"):
        HRBench(tsv)
    with pytest.raises(MissingFileError, match=r"HR-Bench file .*hr_bench_8k\.tsv does not exist"):
        load_benchmark(f"hrbench:{tmp_path / 'hr_bench_8k.tsv'}")
    write_tsv(tsv, hr_rows())
    with open(tsv, "a", encoding="utf-8") as fh:
        fh.write("5\tshort row\n")
    bench = HRBench(tsv, cache_dir=tmp_path / "cache", on_error="skip")
    assert len(list(bench)) == 5
    assert str(bench.skipped[0]) == f"{tsv}: row 5: has 2 cells; expected 10, one per header column"


# ----------------------------------------------------------------------------------------- ChartQA
def chartqa_layout(root: Path) -> Path:
    """``ChartQA Dataset/{test,val}/{split}_{human,augmented}.json`` and ``png/``."""
    dataset = root / "ChartQA Dataset"
    for split in ("test", "val"):
        folder = dataset / split
        for subset, items in {
            "human": [{"imgname": "41699051005347.png", "query": "What is the peak value?", "label": "56"}],
            "augmented": [
                {"imgname": "two_col_1.png", "query": "Which year has the lowest value?", "label": "2015"},
                {"imgname": "two_col_1.png", "query": "What is the sum of the values?", "label": 112.5},
            ],
        }.items():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{split}_{subset}.json").write_text(json.dumps(items), encoding="utf-8")
            for item in items:
                placeholder(folder / "png" / item["imgname"])
    return dataset


def test_chartqa_splits_and_subsets(tmp_path: Path) -> None:
    dataset = chartqa_layout(tmp_path)
    bench = load_benchmark(f"chartqa:{dataset}")
    assert len(bench) == 3 and bench.base_dir == dataset / "test"
    tasks = list(bench)
    assert fields(tasks[0]) == fields(
        Task(
            id="test_human-0",
            images=["png/41699051005347.png"],
            question="What is the peak value?",
            answers=["56"],
            source="chartqa",
            metadata={"split": "test", "subset": "human", "imgname": "41699051005347.png", "index": 0},
        )
    )
    assert [t.id for t in tasks[1:]] == ["test_augmented-0", "test_augmented-1"]
    assert tasks[2].answers == ["112.5"]
    assert next(t.id for t in load_benchmark(f"chartqa:{dataset}:val")) == "val_human-0"
    assert len(load_benchmark(f"chartqa:{dataset / 'val'}:val", subsets=("human",))) == 1


def test_chartqa_errors(tmp_path: Path) -> None:
    dataset = chartqa_layout(tmp_path)
    (dataset / "test" / "png" / "two_col_1.png").unlink()
    with pytest.raises(RowError, match=r"test_augmented.json: row 0: id 'test_augmented-0': field 'imgname': image"):
        list(load_benchmark(f"chartqa:{dataset}"))
    (dataset / "val" / "val_augmented.json").unlink()
    with pytest.raises(MissingFileError, match=r"val_augmented\.json does not exist"):
        load_benchmark(f"chartqa:{dataset}:val")
    with pytest.raises(ValueError, match="unknown ChartQA split 'dev'"):
        load_benchmark(f"chartqa:{dataset}", split="dev")


# ------------------------------------------------------------------------------------ verl parquet
def verl_rows() -> list[dict[str, Any]]:
    def row(index: int, color: tuple[int, int, int], transform: list[str], bbox: list[float] | None) -> dict[str, Any]:
        question = f"What is written on sign {index}?"
        return {
            "data_source": "mvtoolbench",
            "prompt": [{"role": "user", "content": f"<image>\n{question}"}],
            "images": [{"bytes": image_bytes(color, (48, 32), "PNG"), "path": None}],
            "ability": "ocr",
            "reward_model": {"ground_truth": f"SIGN {index}", "style": "rule"},
            "extra_info": {
                "answer": f"SIGN {index}",
                "bbox": bbox,
                "dataset_name": "hiertext",
                "index": index,
                "question": question,
                "split": "test",
                "transform": transform,
            },
        }

    return [
        row(0, (250, 0, 0), ["crop", "rotate_90"], [4.0, 5.0, 20.0, 12.0]),
        row(1, (0, 250, 0), ["flip_horizontal"], None),
        row(2, (0, 0, 250), [], [0.0, 0.0, 48.0, 32.0]),
    ]


def test_verl_parquet_images_boxes_and_transforms(tmp_path: Path) -> None:
    path = tmp_path / "mvtoolbench.parquet"
    pq.write_table(pa.Table.from_pylist(verl_rows()), path)
    cache_dir = tmp_path / "cache"
    bench = load_benchmark(f"verl:{path}", cache_dir=cache_dir)
    assert len(bench) == 3
    tasks = list(bench)
    first = tasks[0]
    assert first.id == "hiertext-0"
    assert first.question == "What is written on sign 0?"
    assert first.answers == ["SIGN 0"]
    assert first.source == "mvtoolbench"
    assert first.bboxes == [(4.0, 5.0, 20.0, 12.0)]
    assert first.transforms == [TransformRecord(name="rotate_90", inverse=["rotate_270"])]
    assert first.expected_ops == ["crop", "rotate_270"]
    assert first.metadata == {
        "dataset_name": "hiertext",
        "index": 0,
        "split": "test",
        "data_source": "mvtoolbench",
        "transform": ["crop", "rotate_90"],
        "scoring": "codevision",
        "ability": "ocr",
        "reward_model": {"ground_truth": "SIGN 0", "style": "rule"},
    }
    assert Path(first.images[0]).is_relative_to(cache_dir) and first.images[0].endswith(".png")
    assert np.asarray(first.load_images()[0])[0, 0].tolist() == [250, 0, 0]
    assert (tasks[1].bboxes, tasks[1].expected_ops) == ([], ["flip_h"])  # the op trace's name for it
    assert tasks[1].transforms == [TransformRecord(name="flip_horizontal", inverse=["flip_h"])]
    assert (tasks[2].transforms, tasks[2].expected_ops) == ([], [])
    assert len(list(cache_dir.rglob("*.png"))) == 3
    assert [fields(t) for t in load_benchmark(f"verl:{tmp_path}", cache_dir=cache_dir)] == [fields(t) for t in tasks]


def test_verl_question_from_prompt_and_transform_shapes(tmp_path: Path) -> None:
    rows = verl_rows()
    for row in rows:
        del row["extra_info"]["question"]
        row["extra_info"]["transform"] = json.dumps(row["extra_info"]["transform"])  # some exports store JSON text
    rows[2]["extra_info"]["transform"] = "rotate_180"
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    tasks = list(load_benchmark(f"verl:{path}", cache_dir=tmp_path / "cache"))
    assert tasks[0].question == "What is written on sign 0?"
    assert tasks[0].expected_ops == ["crop", "rotate_270"]
    assert tasks[2].expected_ops == ["rotate_180"]


def test_verl_transforms_are_undone_last_first_like_every_other_source(tmp_path: Path) -> None:
    rows = verl_rows()[:1]
    rows[0]["extra_info"]["transform"] = ["rotate_90", "flip_horizontal"]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    (task,) = load_benchmark(f"verl:{path}", cache_dir=tmp_path / "cache")
    # Applied: a quarter turn, then a mirror. Undone: the mirror first, then the turn back.
    assert task.expected_ops == expected_ops(task.transforms) == ["flip_h", "rotate_270"]
    image = np.arange(12).reshape(3, 4)
    corrupted = np.fliplr(np.rot90(image))
    assert np.array_equal(np.rot90(np.fliplr(corrupted), -1), image)  # flip_h, then 270 ccw
    assert rule_name(task) == "codevision" and task.metadata["data_source"] == "mvtoolbench"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda row: row["images"][0].update(bytes=b"garbage"),
            "row 1: id 'hiertext-1': field 'images': the bytes are not an image",
        ),
        (
            lambda row: row["extra_info"].update(bbox=[1.0, 2.0, 3.0]),
            "field 'extra_info.bbox': expected 4 numbers [x0, y0, x1, y1], got list [1.0, 2.0, 3.0]",
        ),
        (
            lambda row: (row["reward_model"].update(ground_truth=None), row["extra_info"].update(answer=None)),
            "field 'reward_model.ground_truth': missing, and so is extra_info.answer",
        ),
        (lambda row: row.update(images=None), "field 'images': is empty; expected a list of images"),
    ],
)
def test_verl_malformed_rows(tmp_path: Path, change: Any, expected: str) -> None:
    rows = verl_rows()
    change(rows[1])
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(RowError) as caught:
        list(load_benchmark(f"verl:{path}", cache_dir=tmp_path / "cache"))
    assert str(caught.value).startswith(f"{path}: row 1: ")
    assert expected in str(caught.value)


# ---------------------------------------------------------------------------------------- generic
def test_jsonl_default_fields_images_in_every_shape(tmp_path: Path) -> None:
    placeholder(tmp_path / "imgs" / "a.png")
    png = image_bytes((1, 2, 3), (5, 4), "PNG")
    lines = [
        {"id": "a", "question": "Q1?", "answer": "x", "image": "imgs/a.png", "bbox": [1, 2, 3, 4], "level": "easy"},
        {"id": "b", "question": "Q2?", "answer": ["y", 3], "image": base64.b64encode(png).decode(), "level": "hard"},
        {"id": 7, "question": "Q3?", "answer": 2.0, "image": "data:image/png;base64," + base64.b64encode(png).decode()},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    bench = load_benchmark(f"jsonl:{path}", cache_dir=tmp_path / "cache")
    tasks = list(bench)
    assert fields(tasks[0]) == fields(
        Task(
            id="a",
            images=["imgs/a.png"],
            question="Q1?",
            answers=["x"],
            source="items",
            bboxes=[(1.0, 2.0, 3.0, 4.0)],
            metadata={"level": "easy"},
        )
    )
    assert tasks[1].answers == ["y", "3"] and tasks[2].answers == ["2"] and tasks[2].id == "7"
    assert tasks[1].images == tasks[2].images  # the same bytes land in the same cache file
    assert tasks[1].load_images()[0].size == (5, 4)

    mapped = load_benchmark(
        f"jsonl:{path}", fields={"question": "level", "answers": None, "images": None, "id": None}, source="mine"
    )
    assert next((t.id, t.question, t.answers, t.source) for t in mapped) == ("1", "easy", [], "mine")
    with pytest.raises(ValueError, match=r"unknown task fields \['prompt'\]"):
        load_benchmark(f"jsonl:{path}", fields={"prompt": "question"})


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    placeholder(tmp_path / "here.png")
    path = tmp_path / "bad.jsonl"
    lines = [
        '{"question": "ok?", "answer": "1", "image": "here.png"}',
        '{"answer": "2", "image": "here.png"}',
        '{"question": "x", "answer": {"a": 1}, "image": "here.png"}',
        "{oops",
        "[1]",
        '{"question": "y", "answer": "3", "image": "nothere.png"}',
        '{"question": "z", "label": "4", "image": "here.png"}',
        '{"question": "w", "answer": "5"}',
        '{"question": "v", "answer": "6", "image": "here.png", "id": "v"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bench = load_benchmark(f"jsonl:{path}", on_error="skip")
    assert [t.id for t in bench] == ["1"]
    assert [str(e).removeprefix(f"{path}: ") for e in bench.skipped] == [
        "line 2: no question column among ['answer', 'image']; expected one of question, query, prompt, problem, "
        "instruction, text or a mapping such as fields={'question': 'my_column'}",
        "line 3: field 'answer': expected a string or a non-empty list of strings or numbers, got dict {'a': 1}",
        "line 4: is not valid JSON (Expecting property name enclosed in double quotes at column 2); "
        "expected one object per line",
        "line 5: expected a JSON object, got list [1]",
        f"line 6: field 'image': image file {tmp_path}/nothere.png does not exist; expected the image at that path",
        "line 7: field 'label': holds the answers here but the first line uses 'answer'; expected the same fields",
        "line 8: field 'image': missing; expected the fields of the first line in every line (images)",
        "line 9: field 'id': is not in the first line, which has no id; expected the same fields in every line",
    ]


def test_parquet_with_image_structs_and_shards(tmp_path: Path) -> None:
    rows = [
        {"question_id": 10, "query": "What?", "label": "cat", "image": {"bytes": image_bytes(), "path": "x.jpg"}},
        {"question_id": 11, "query": "Who?", "label": "dog", "image": {"bytes": None, "path": "pics/y.png"}},
    ]
    placeholder(tmp_path / "data" / "pics" / "y.png")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part-0.parquet")
    bench = load_benchmark(f"parquet:{tmp_path / 'data' / 'part-0.parquet'}", cache_dir=tmp_path / "cache")
    assert len(bench) == 2
    tasks = list(bench)
    assert [(t.id, t.question, t.answers, t.source) for t in tasks] == [
        ("10", "What?", ["cat"], "part-0"),
        ("11", "Who?", ["dog"], "part-0"),
    ]
    assert tasks[0].load_images()[0].size == (24, 16) and tasks[1].images == ["pics/y.png"]
    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp_path / "data" / "part-1.parquet")
    sharded = load_benchmark(f"parquet:{tmp_path / 'data'}", fields={"id": None}, cache_dir=tmp_path / "cache")
    assert len(sharded) == 3 and [t.id for t in sharded] == ["part-0-0", "part-0-1", "part-1-0"]
    with pytest.raises(BenchmarkError, match=r"column 'nope' \(mapped to answers\) is absent"):
        load_benchmark(f"parquet:{tmp_path / 'data'}", fields={"answers": "nope"})
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(BenchmarkError, match=r"broken\.parquet is not a readable parquet file"):
        load_benchmark(f"parquet:{tmp_path / 'broken.parquet'}")


def test_hf_saved_dataset_with_splits(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.Value("string"), "image": datasets.Image()}
    )

    def split(n: int) -> Any:
        images = [Image.new("RGB", (10 + i, 6), (i * 40, 0, 0)) for i in range(n)]
        return datasets.Dataset.from_dict(
            {"question": [f"q{i}" for i in range(n)], "answer": [str(i) for i in range(n)], "image": images},
            features=features,
        )

    folder = tmp_path / "my dataset"
    datasets.DatasetDict({"train": split(3), "test": split(2)}).save_to_disk(str(folder))
    bench = load_benchmark(f"hf:{folder}:test", cache_dir=tmp_path / "cache")
    assert len(bench) == 2
    tasks = list(bench)
    assert [(t.id, t.question, t.answers, t.source) for t in tasks] == [
        ("0", "q0", ["0"], "my dataset"),
        ("1", "q1", ["1"], "my dataset"),
    ]
    assert tasks[1].load_images()[0].size == (11, 6)
    with pytest.raises(BenchmarkError, match=r"holds the splits \['test', 'train'\]; choose one"):
        load_benchmark(f"hf:{folder}")
    single = tmp_path / "single"
    split(1).save_to_disk(str(single))
    assert len(load_benchmark(f"hf:{single}", cache_dir=tmp_path / "cache")) == 1
    with pytest.raises(BenchmarkError, match="is not a dataset saved with save_to_disk"):
        load_benchmark(f"hf:{tmp_path / 'cache'}")


# --------------------------------------------------------------------------------------- registry
def test_spec_errors_list_the_known_benchmarks(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark("ocrbenchh:/x")
    message = str(caught.value)
    assert "unknown benchmark 'ocrbenchh'" in message
    assert all(name in message for name in BENCHMARKS) and all(form in message for form in SPEC_FORMS)
    assert set(BENCHMARKS) == {form.split(":")[0].split("[")[0] for form in SPEC_FORMS}
    with pytest.raises(BenchmarkError, match=r"bad spec 'vstar': expected vstar:PATH"):
        load_benchmark("vstar")
    with pytest.raises(BenchmarkError, match="synthetic:N with N a positive integer"):
        load_benchmark("synthetic:ten")
    with pytest.raises(MissingFileError, match=r"V\* folder .*/nothing does not exist"):
        load_benchmark(f"vstar:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="on_error must be one of raise, skip"):
        load_benchmark("synthetic:1", on_error="ignore")


def test_scorers_accept_loaded_metadata(tmp_path: Path) -> None:
    scoring = pytest.importorskip("codevision.scoring")
    tasks = [*VStar(vstar_layout(tmp_path)), *HRBench(write_tsv(tmp_path / "hr_bench_4k.tsv", hr_rows()))]
    assert Path(tasks[-1].images[0]).is_relative_to(tmp_path / "default-cache" / "images")
    for task in tasks:
        letter = task.metadata["answer_letter"]
        wrong = next(x for x in LETTERS[: len(task.metadata["choices"])] if x != letter)
        assert scoring.score(task.source, f"<answer>{letter}</answer>", task.answers, **task.metadata).correct
        assert not scoring.score(task.source, f"<answer>{wrong}</answer>", task.answers, **task.metadata).correct


@needs_data
def test_scorers_accept_loaded_metadata_of_real_entries(tmp_path: Path) -> None:
    scoring = pytest.importorskip("codevision.scoring")
    real = mathvista_items()
    mathvista = mathvista_layout(tmp_path / "m", {pid: real[pid] for pid in ("1", "2", "7", "225")})
    ocrbench = ocrbench_layout(tmp_path / "o", [ocrbench_items()[i] for i in (0, 300, 900)])
    for task in [*load_benchmark(f"mathvista:{mathvista}"), *load_benchmark(f"ocrbench:{ocrbench}")]:
        reply = task.metadata.get("answer_letter") or task.answers[0]
        assert scoring.score(task.source, f"<answer>{reply}</answer>", task.answers, **task.metadata).correct


# -------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_per_seed_and_index() -> None:
    first, again = list(load_benchmark("synthetic:10")), list(SyntheticBenchmark(10, seed=0))
    assert [fields(t) for t in first] == [fields(t) for t in again]
    assert all(a.load_images()[0].tobytes() == b.load_images()[0].tobytes() for a, b in zip(first, again, strict=True))
    assert fields(synthetic_task(7)) == fields(first[7])  # item i does not depend on how many were asked for
    other = list(SyntheticBenchmark(10, seed=1))
    assert sum(a.answers != b.answers for a, b in zip(first, other, strict=True)) >= 5
    assert len(load_benchmark("synthetic")) == 50
    assert [t.metadata["kind"] for t in first[:5]] == list(SYNTHETIC_KINDS)
    assert {t.metadata["kind"] for t in SyntheticBenchmark(4, kinds=["table"])} == {"table"}
    with pytest.raises(ValueError, match="unknown synthetic kinds"):
        SyntheticBenchmark(3, kinds=["pie_chart"])


def ink_share(image: Image.Image, box: tuple[float, float, float, float]) -> float:
    """The share of the box's pixels that differ clearly from the image's background colour."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    background = pixels[0, 0]
    x0, y0, x1, y1 = (round(v) for v in box)
    crop = pixels[y0:y1, x0:x1]
    return float((np.abs(crop - background).sum(axis=-1) > 90).mean())


def test_synthetic_answers_and_boxes_match_what_was_drawn() -> None:
    for task in SyntheticBenchmark(40, seed=11):
        image = task.load_images()[0]
        data, answer, kind = task.metadata["data"], task.answers[0], task.metadata["kind"]
        (box,) = task.bboxes
        assert 0 <= box[0] < box[2] <= image.width and 0 <= box[1] < box[3] <= image.height
        assert ink_share(image, box) > 0.04, (task.id, kind)  # the answer region is not blank
        # A small region, so that cropping it is worth something.
        assert (box[2] - box[0]) * (box[3] - box[1]) < 0.25 * image.width * image.height
        if kind == "text_lines":
            ordinal = task.question.split()[-2]
            assert data["lines"][["first", "second", "third", "fourth", "fifth", "sixth"].index(ordinal)] == answer
        elif kind == "document":
            assert answer in data["fields"].values()
        elif kind == "table":
            column, item = task.question.removeprefix("What is the value of ").split(" in the table")[0].split(" for ")
            row = next(r for r in data["rows"] if r[0] == item)
            assert row[data["columns"].index(column)] == answer
        elif kind == "bar_chart":
            values, labels = data["values"], data["labels"]
            if "tallest" in task.question:
                assert answer == labels[values.index(max(values))]
            elif "shortest" in task.question:
                assert answer == labels[values.index(min(values))]
            else:
                assert answer == str(
                    values[labels.index(task.question.removeprefix("What is the value of the ").removesuffix(" bar?"))]
                )
        else:
            months, values = data["months"], data["values"]
            if "highest" in task.question:
                assert answer == months[values.index(max(values))]
            elif "lowest" in task.question:
                assert answer == months[values.index(min(values))]
            else:
                assert answer == str(values[months.index(task.question.rstrip("?").split()[-1])])


# -------------------------------------------------------------------------------------- the judge's view
@needs_data
def test_every_judge_and_extractor_call_gets_the_items_question(tmp_path: Path) -> None:
    """Through evaluation's scorer and the rewards alike, the judge sees the question as the benchmark
    states it (and the options where there are some), never "(not given)" or the model's prompt."""
    from codevision.eval.scorer import make_scorer
    from codevision.policies.fake_server import FakeOpenAIServer
    from codevision.rewards import RewardSpec
    from codevision.scoring import LLMJudge
    from codevision.scoring.prompts import EXTRACTION_TEMPLATE, SYSTEM, VERDICT_TEMPLATES
    from codevision.trajectory import Trajectory, Turn

    vstar = next(iter(VStar(vstar_layout(tmp_path / "v"))))
    hrbench = next(iter(HRBench(write_tsv(tmp_path / "hr_bench_4k.tsv", hr_rows()))))
    real = mathvista_items()
    mathvista = next(t for t in load_benchmark(f"mathvista:{mathvista_layout(tmp_path / 'm', {'1': real['1']})}"))
    verl_path = tmp_path / "rl.parquet"
    pq.write_table(pa.Table.from_pylist(verl_rows()[:1]), verl_path)
    codevision_row = next(iter(load_benchmark(f"verl:{verl_path}", cache_dir=tmp_path / "cache")))
    response = "something unclear"
    choose = VERDICT_TEMPLATES["multiple-choice"]
    # What each benchmark must put into its judge's prompt, written out: the item's question as the
    # benchmark states it, its options, the reference; MathVista's extractor gets the question with its
    # answer-format hint.
    expected = {
        "vstar": choose.format(
            question="What is the color of the glove?",
            options="A. blue\nB. red\nC. black\nD. white",
            reference="D. white",
            response=response,
        ),
        "hrbench_4k": choose.format(
            question='What does the "sign"\tsay?\nLook closely.',
            options="A. STOP\nB. GO\nC. SLOW\nD. WAIT",
            reference="A. STOP",
            response=response,
        ),
        "mathvista": EXTRACTION_TEMPLATE.format(
            question=real["1"]["question"] + "\nAnswer with a decimal number with 1 decimal place(s).",
            response=response,
        ),
        "mvtoolbench": VERDICT_TEMPLATES["general"].format(
            question="What is written on sign 0?", reference="SIGN 0", response=response
        ),
    }
    for task in (vstar, hrbench, mathvista, codevision_row):
        trajectory = Trajectory(task_id=task.id, protocol="codevision", final_answer=response)
        trajectory.turns = [Turn(index=0, text=f"<answer>{response}</answer>", answer=response)]
        with FakeOpenAIServer(lambda body: "0", model="judge") as server:
            judge = LLMJudge(server.url, "judge", backoff=0.01)
            asyncio.run(make_scorer(judge)(task, trajectory))
            asyncio.run(RewardSpec().acompute(task, trajectory, judge=judge))
            conversations = [request.body["messages"] for request in server.requests]
        # Once from evaluation's scorer, once from the reward: the same prompt, in full.
        message = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": expected[task.source]}]
        assert conversations == [message, message], (task.source, conversations)
