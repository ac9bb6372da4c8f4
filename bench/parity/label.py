"""Label the parity sets with the official scripts' verdicts, run from a folder outside this repository.

The official code is not part of codevision: fetch it yourself at the commits below and lay the
files out under one folder, by repository, at their paths in the repository::

    OFFICIAL/MultimodalOCR/OCRBench/example.py                          Yuliang-Liu/MultimodalOCR @794c36d
    OFFICIAL/MathVista/evaluation/{extract_answer,calculate_score}.py   lupantech/MathVista @53d5258
    OFFICIAL/MathVista/models/gpt.py                                    (same)
    OFFICIAL/pix2struct/pix2struct/metrics.py                           google-research/pix2struct @945f27e
    OFFICIAL/HR-Bench/hrbench/vlmeval/dataset/utils/hrbench.py          DreamMr/HR-Bench @b17b199
    OFFICIAL/HR-Bench/hrbench/vlmeval/utils/matching_util.py            (same)
    OFFICIAL/lmms-eval/lmms_eval/tasks/vstar_bench/utils.py             EvolvingLMMs-Lab/lmms-eval @75571cf
    OFFICIAL/Qwen-VL/eval_mm/infographicsvqa_eval.py                    QwenLM/Qwen-VL @aa00ed0
    OFFICIAL/CodeVision/recipe/codevision/reward.py                     ByteDance-BandAI/CodeVision @e098588
    OFFICIAL/CodeVision/verl/utils/reward_score/llmjudge.py             (same)

then, with a Python that has ``Levenshtein`` (MathVista's edit distance) installed:

    python bench/parity/label.py OFFICIAL
    python bench/parity/label.py OFFICIAL --only codevision   # one set: only its files are needed

Each row gets ``official``: the verdict of the official code on the whole reply (``strict``) and on
the row's answer span (``default``); for the normalisation set, which has no reply, one verdict.
The modules are imported unchanged, with stand-ins for the imports they only need for their
command-line use (API clients, progress bars, loggers, the models they would load); OCRBench's
rule lives in its script's main block, which is run as released over a one-item list. Nothing here
imports codevision, so the labels do not depend on the code they check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import sys
import tempfile
import textwrap
import types
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

SETS = Path(__file__).parent / "sets"
Row = dict[str, Any]


# ------------------------------------------------------------------------------ loading the modules
def stub(name: str, **attributes: Any) -> types.ModuleType:
    """A module standing in for an import the official code only needs for its command-line use."""
    module = types.ModuleType(name)
    module.__path__ = []  # type: ignore[attr-defined]  # also usable as a package
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


class Anything:
    """Accepts any construction, call or attribute: stands in for classes and loggers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Anything:
        return self

    def __getattr__(self, name: str) -> Anything:
        return self

    def __getitem__(self, key: Any) -> Anything:
        return self


def install_stubs() -> None:
    for name in ("openai", "rich", "rich.logging", "tqdm", "datasets", "utilities", "torch", "lmdeploy"):
        stub(name)
    sys.modules["openai"].__dict__.update(AzureOpenAI=Anything, OpenAI=Anything, DefaultHttpxClient=Anything)
    stub("openai.types")
    stub("openai.types.chat", ChatCompletionContentPartParam=dict, ChatCompletionMessageParam=dict)
    stub("PIL")
    stub("PIL.Image", Image=Anything)
    sys.modules["PIL"].Image = sys.modules["PIL.Image"]  # type: ignore[attr-defined]
    sys.modules["rich.logging"].RichHandler = Anything  # type: ignore[attr-defined]
    sys.modules["tqdm"].tqdm = lambda iterable, *args, **kwargs: iterable  # type: ignore[attr-defined]
    sys.modules["datasets"].load_dataset = Anything  # type: ignore[attr-defined]
    sys.modules["utilities"].__dict__.update(read_json=Anything, save_json=Anything)
    sys.modules["lmdeploy"].__dict__.update(
        pipeline=Anything, TurbomindEngineConfig=Anything, GenerationConfig=Anything
    )
    stub("pandas")
    stub("loguru", logger=Anything())
    stub("editdistance")
    for name in ("pycocoevalcap", "pycocoevalcap.tokenizer", "pycocoevalcap.cider"):
        stub(name)
    stub("pycocoevalcap.tokenizer.ptbtokenizer", PTBTokenizer=Anything)
    stub("pycocoevalcap.cider.cider", Cider=Anything)
    # What VLMEvalKit's ``from ..smp import *`` gives the two HR-Bench modules.
    import copy
    import os
    import string

    for name in ("vlmeval", "vlmeval.utils", "vlmeval.dataset", "vlmeval.dataset.utils"):
        stub(name)
    stub("vlmeval.smp", cp=copy, os=os, string=string, re=re, get_logger=lambda name: Anything())
    stub("evaluation")
    stub("evaluation.prompts")
    stub("evaluation.prompts.ext_ans", demo_prompt="")


def load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Official:
    """The official scoring functions, loaded from ``root`` when first used (a set needs only its own files)."""

    def __init__(self, root: Path) -> None:
        install_stubs()
        self.root = root

    @cached_property
    def gpt(self) -> types.ModuleType:
        gpt = load("models.gpt", self.root / "MathVista/models/gpt.py")
        stub("models", gpt=gpt)
        return gpt

    @cached_property
    def extract(self) -> types.ModuleType:
        self.gpt  # noqa: B018  # extract_answer.py imports it
        return load("mathvista_extract_answer", self.root / "MathVista/evaluation/extract_answer.py")

    @cached_property
    def calculate(self) -> types.ModuleType:
        return load("mathvista_calculate_score", self.root / "MathVista/evaluation/calculate_score.py")

    @cached_property
    def pix2struct(self) -> types.ModuleType:
        return load("pix2struct_metrics", self.root / "pix2struct/pix2struct/metrics.py")

    @cached_property
    def hrbench(self) -> types.ModuleType:
        path = self.root / "HR-Bench/hrbench/vlmeval/dataset/utils/hrbench.py"
        return load("vlmeval.dataset.utils.hrbench", path)

    @cached_property
    def matching(self) -> types.ModuleType:
        return load("vlmeval.utils.matching_util", self.root / "HR-Bench/hrbench/vlmeval/utils/matching_util.py")

    @cached_property
    def vstar(self) -> types.ModuleType:
        return load("lmms_eval_vstar_utils", self.root / "lmms-eval/lmms_eval/tasks/vstar_bench/utils.py")

    @cached_property
    def infovqa(self) -> types.ModuleType:
        return load("qwen_infographicsvqa_eval", self.root / "Qwen-VL/eval_mm/infographicsvqa_eval.py")

    @cached_property
    def ocrbench_loop(self) -> str:
        return ocrbench_loop(self.root / "MultimodalOCR/OCRBench/example.py")

    @cached_property
    def codevision(self) -> types.ModuleType:
        """CodeVision's ``recipe/codevision/reward.py``, its judge client being the released one."""
        stub("requests")
        stub("math_verify")
        for name in ("verl", "verl.utils", "verl.utils.reward_score"):
            stub(name)
        load("verl.utils.reward_score.llmjudge", self.root / "CodeVision/verl/utils/reward_score/llmjudge.py")
        return load("codevision_reward", self.root / "CodeVision/recipe/codevision/reward.py")


def ocrbench_loop(path: Path) -> str:
    """The scoring loop of OCRBench's ``example.py`` main block, as released, dedented to run on ``data``."""
    source = path.read_text(encoding="utf-8")
    start = source.index("    for i in range(len(data)):\n        data_type")
    end = source.index("    save_json(data", start)
    return textwrap.dedent(source[start:end])


# -------------------------------------------------------------------------------------- the verdicts
def ocrbench(official: Official, row: Row, text: str) -> bool:
    data = [{"type": "t", "dataset_name": row["item"]["dataset_name"], "answers": row["references"], "predict": text}]
    exec(official.ocrbench_loop, {"data": data})
    return bool(data[0]["result"])


class RecordedClient:
    """An OpenAI client whose every completion is ``reply``; raises if asked when ``reply`` is None."""

    def __init__(self, reply: str | None) -> None:
        self.reply = reply
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self.create))

    def create(self, **request: Any) -> Any:
        if self.reply is None:
            raise LookupError("the extractor was asked")
        message = types.SimpleNamespace(content=self.reply)
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])


def mathvista_extraction(official: Official, item: dict[str, Any], text: str, reply: str | None) -> str | None:
    """``extract_answer`` of ``text``; None when the rules fail and no extractor reply is recorded."""
    model = official.gpt.GPT_Model(client=RecordedClient(reply), patience=1)
    asked: list[bool] = []
    original = model.get_response

    def get_response(**kwargs: Any) -> str:
        asked.append(True)
        if reply is None:
            raise LookupError("the extractor was asked")
        return original(**kwargs)

    model.get_response = get_response
    extraction = official.extract.extract_answer(model, text, item, quick_extract=item["quick_extract"])
    return None if asked and reply is None else extraction


def mathvista_verdict(official: Official, item: dict[str, Any], extraction: object, answer: str) -> dict[str, Any]:
    prediction = official.calculate.normalize_extracted_answer(
        extraction, item["choices"], item["question_type"], item["answer_type"], item["precision"]
    )
    return {"prediction": prediction, "correct": bool(official.calculate.safe_equal(prediction, answer))}


def chartqa(official: Official, row: Row, text: str) -> bool:
    return any(official.pix2struct.relaxed_correctness(target, text) for target in row["references"])


def anls(official: Official, row: Row, text: str) -> float:
    """The per-sample ANLS of ``evaluate_method``, from a ground-truth and a submission file of one item."""
    with tempfile.TemporaryDirectory() as folder:
        truth, submission = Path(folder, "gt.json"), Path(folder, "submission.json")
        question = {"questionId": 1, "question": "q", "answers": row["references"]}
        truth.write_text(json.dumps({"dataset_name": "parity", "data": [question]}))
        submission.write_text(json.dumps([{"questionId": 1, "answer": text}]))
        parameters = types.SimpleNamespace(answer_types=False, anls_threshold=0.5)
        result = official.infovqa.evaluate_method(str(truth), str(submission), parameters)
    return float(result["per_sample_result"]["1"]["score"])


def vstar(official: Official, row: Row, text: str) -> bool:
    doc = {"label": row["references"], "category": "parity", "question_id": row["id"], "text": ""}
    result = official.vstar.vstar_process_results(doc, [text])
    return result["vstar_overall_acc"]["score"] == 1.0


def options_of(row: Row) -> dict[str, str]:
    return dict(zip("ABCDEFGH", row["item"]["choices"], strict=False))


def hrbench_letter(official: Official, row: Row, text: str) -> bool:
    return official.matching.can_infer(text, options_of(row)) == row["references"]


def hrbench_judge(official: Official, row: Row) -> bool:
    return official.hrbench.parse_score(row["judge_reply"])[0] == 1


def codevision(official: Official, row: Row) -> dict[str, Any]:
    """``compute_score`` on the response as verl decodes it, its judge client the released one with the
    row's judge reply recorded: the score, whether the judge was asked, and with which of its prompts."""
    module = official.codevision
    judge = module.LLMJudgeClient(base_url="http://recorded/v1", model_name="recorded")
    prompts: list[str] = []

    def create(**request: Any) -> Any:
        prompts.append(request["messages"][0]["content"])
        message = types.SimpleNamespace(content=row["judge_reply"])
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])

    judge.client = types.SimpleNamespace(chat=types.SimpleNamespace(completions=types.SimpleNamespace(create=create)))
    module.LLM_JUDGE_CLIENT = judge
    item = row["item"]
    value, _ = module.compute_score(
        solution_str=row["response"],
        ground_truth=row["references"],
        data_source=item["data_source"],
        extra_info={"question": item["question"]},
    )
    asked = [
        task for task, template in judge.prompts.items() if prompts and prompts[0].startswith(template.split("{")[0])
    ]
    return {"score": float(value), "judged": bool(prompts), "judge_prompt": asked[0] if asked else None}


# ------------------------------------------------------------------------------------------ labelling
def by_text(verdict: Callable[[Official, Row, str], Any]) -> Callable[[Official, Row], dict[str, Any]]:
    """A labeller that applies ``verdict`` to the whole reply and to the answer span."""

    def label(official: Official, row: Row) -> dict[str, Any]:
        return {"strict": verdict(official, row, row["reply"]), "default": verdict(official, row, row["span"])}

    return label


def mathvista_extract_label(official: Official, row: Row) -> dict[str, Any]:
    item = row["item"]
    return {
        "strict": mathvista_extraction(official, item, row["reply"], None),
        "default": mathvista_extraction(official, item, row["span"], None),
    }


def mathvista_judge_label(official: Official, row: Row) -> dict[str, Any]:
    item, reply = row["item"], row["extractor_reply"]
    verdicts = {}
    for mode, text in (("strict", row["reply"]), ("default", row["span"])):
        extraction = mathvista_extraction(official, item, text, reply)
        verdicts[mode] = mathvista_verdict(official, item, extraction, row["references"])["correct"]
    return verdicts


def mathvista_normalise_label(official: Official, row: Row) -> dict[str, Any]:
    return mathvista_verdict(official, row["item"], row["extraction"], row["references"])


def hrbench_judge_label(official: Official, row: Row) -> dict[str, Any]:
    verdict = hrbench_judge(official, row)
    return {"strict": verdict, "default": verdict}


LABELLERS: dict[str, Callable[[Official, Row], dict[str, Any]]] = {
    "ocrbench": by_text(ocrbench),
    "mathvista-extract": mathvista_extract_label,
    "mathvista-normalise": mathvista_normalise_label,
    "mathvista-judge": mathvista_judge_label,
    "chartqa": by_text(chartqa),
    "anls": by_text(anls),
    "vstar": by_text(vstar),
    "hrbench-letter": by_text(hrbench_letter),
    "hrbench-judge": hrbench_judge_label,
    "codevision": lambda official, row: dict.fromkeys(("strict", "default"), codevision(official, row)),
}


def label_sets(official: Official, directory: Path, only: list[str] | None = None) -> dict[str, int]:
    counts = {}
    for name, labeller in LABELLERS.items():
        if only and name not in only:
            continue
        path = directory / f"{name}.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        for row in rows:
            row["official"] = labeller(official, row)
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        counts[name] = len(rows)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", type=Path, help="the folder holding the official files, by repository")
    parser.add_argument("--sets", type=Path, default=SETS)
    parser.add_argument("--only", nargs="+", choices=sorted(LABELLERS), help="label only these sets")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the official code logs every reply it cannot read
    for name, count in label_sets(Official(args.official.resolve()), args.sets, args.only).items():
        print(f"{name}: {count} rows labelled")


if __name__ == "__main__":
    main()
