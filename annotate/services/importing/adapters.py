"""Adapters for the real data sets in PREFLOOP_DATA_DIR (see its README for sources and schemas).

Each keeps the source's human votes as imported votes with pseudonymous voter ids, so the
leaderboard and exports have real votes from the first import.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from annotate.services.importing.readers import Problems, iter_csv_rows, iter_json_lines, text_field
from annotate.services.importing.records import (
    ComparisonRecord,
    CompletionRecord,
    ImportBatch,
    PromptRecord,
    VoteRecord,
    text_key,
)

# --- PRD Vicuna80: 80 questions, 5 models' answers, 7,040 human votes with ties ------------------

PRD_RATING_FILE = re.compile(r"^answer_(?P<a>.+)-vs-answer_(?P<b>.+)-human-reviewer_threeclass\.jsonl$")
PRD_SCORE = {1: "a", 2: "b", 3: "tie"}


def prd_root(path: Path) -> Path | None:
    """The vicuna80 folder, given it, its PRD parent or the data root."""
    for candidate in (path, path / "vicuna80", path / "PRD" / "vicuna80"):
        if (candidate / "prompts" / "vicuna_questions.jsonl").is_file():
            return candidate
    return None


def _prd_questions(root: Path, batch: ImportBatch, problems: Problems) -> dict[int, PromptRecord]:
    """The 80 questions as prompts of the batch, by question_id."""
    questions = root / "prompts" / "vicuna_questions.jsonl"
    by_qid: dict[int, PromptRecord] = {}
    for line, row in iter_json_lines(questions, problems):
        qid = row.get("question_id")
        text = text_field(row, "text", questions.name, line, problems)
        if not isinstance(qid, int):
            problems.add(questions.name, line, "question_id", "must be an integer")
            continue
        category = text_field(row, "category", questions.name, line, problems, required=False)
        by_qid[qid] = batch.prompt(
            PromptRecord(text=text, key=f"vicuna80:{qid}", category=category, metadata={"question_id": qid}, line=line)
        )
    return by_qid


def _prd_answers(
    root: Path, by_qid: dict[int, PromptRecord], problems: Problems
) -> dict[tuple[str, int], CompletionRecord]:
    """Each model's answer file as completions of the questions, by (model, question_id)."""
    questions = root / "prompts" / "vicuna_questions.jsonl"
    answers: dict[tuple[str, int], CompletionRecord] = {}
    for file in sorted((root / "generations").glob("answer_*.jsonl")):
        model = file.stem.removeprefix("answer_")
        for line, row in iter_json_lines(file, problems):
            qid = row.get("question_id")
            text = text_field(row, "text", file.name, line, problems)
            if qid not in by_qid:
                problems.add(file.name, line, "question_id", f"{qid!r} is not a question in {questions.name}")
                continue
            metadata = {k: row[k] for k in ("answer_id", "model_id", "metadata") if k in row}
            answers[(model, qid)] = by_qid[qid].add(
                CompletionRecord(text=text, model=model, key=f"prd:{model}:{qid}", metadata=metadata)
            )
    return answers


def _prd_votes(
    root: Path,
    batch: ImportBatch,
    by_qid: dict[int, PromptRecord],
    answers: dict[tuple[str, int], CompletionRecord],
    problems: Problems,
) -> None:
    """The human three-class ratings as comparisons with one imported vote each."""
    questions = root / "prompts" / "vicuna_questions.jsonl"
    for file in sorted((root / "ratings-human").glob("*.jsonl")):
        match = PRD_RATING_FILE.match(file.name)
        if not match:
            problems.add(
                file.name, None, None, "file name is not answer_<A>-vs-answer_<B>-human-reviewer_threeclass.jsonl"
            )
            continue
        model_a, model_b = match["a"], match["b"]
        seen: Counter[int] = Counter()
        for line, row in iter_json_lines(file, problems):
            qid, score = row.get("question_id"), row.get("score")
            if qid not in by_qid:
                problems.add(file.name, line, "question_id", f"{qid!r} is not a question in {questions.name}")
                continue
            if score not in PRD_SCORE:
                problems.add(file.name, line, "score", "must be 1 (A better), 2 (B better) or 3 (tie)")
                continue
            prompt = by_qid[qid]
            # The repo has no answers of the guanaco models: keep the votes for leaderboard fits.
            sides = [
                answers.get((model, qid))
                or prompt.add(CompletionRecord(text="", model=model, key=f"prd:{model}:{qid}", text_available=False))
                for model in (model_a, model_b)
            ]
            seen[qid] += 1
            shown = [side.key for side in sides]
            batch.comparisons.append(
                ComparisonRecord(
                    prompt_key=prompt.key,
                    completion_keys=shown,
                    votes=[
                        VoteRecord(
                            voter=f"prd:{model_a}-vs-{model_b}:{qid}:{seen[qid]}", shown=shown, choice=PRD_SCORE[score]
                        )
                    ],
                )
            )


def read_prd(path: Path, problems: Problems, *, with_votes: bool = True) -> ImportBatch:
    root = prd_root(path)
    batch = ImportBatch(source=f"PRD/{path.name}", format="prd", build_pairs=True)
    if root is None:
        problems.add(path.name, None, None, "not a PRD vicuna80 folder (prompts/vicuna_questions.jsonl is missing)")
        return batch
    by_qid = _prd_questions(root, batch, problems)
    answers = _prd_answers(root, by_qid, problems)
    if with_votes:
        _prd_votes(root, batch, by_qid, answers, problems)
    return batch


# --- HH-RLHF harmless-base: dialogues that differ in the last Assistant turn ---------------------

HH_ASSISTANT = "\n\nAssistant:"
HH_MODEL = "hh-rlhf-52b"


_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")


def hh_turns(text: str) -> list[dict]:
    """An HH dialogue ("\n\nHuman: ...\n\nAssistant: ...") as conversation turns.

    The empty "Assistant:" a prompt ends on is the turn to be written, not a turn; consecutive
    turns of one speaker are joined. Text without HH markers is one user turn.
    """
    body = text if text.startswith("\n\n") else "\n\n" + text
    parts = _HH_MARKER.split(body)
    if parts[0].strip() or len(parts) < 3:
        return [{"role": "user", "content": text.strip()}]
    turns: list[dict] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{content.strip()}"
        else:
            turns.append({"role": role, "content": content.strip()})
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    return turns or [{"role": "user", "content": text.strip()}]


def split_hh_pair(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen turn, rejected turn) with prompt + turn == the original dialogue.

    The prompt ends at the last 'Assistant:' the two dialogues share: a final turn may itself
    contain 'Assistant:' or 'Human:' text, so the last marker of one string is not enough.
    """
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(HH_ASSISTANT)
    if cut < 0:
        return None
    cut += len(HH_ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def read_hh_rlhf(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="hh-rlhf")
    file = path.name
    for line, row in iter_json_lines(path, problems):
        chosen = text_field(row, "chosen", file, line, problems)
        rejected = text_field(row, "rejected", file, line, problems)
        if not (chosen and rejected):
            continue
        split = split_hh_pair(chosen, rejected)
        if split is None:
            problems.add(file, line, "rejected", "shares no '\\n\\nAssistant:' turn with chosen")
            continue
        prompt_text, chosen_turn, rejected_turn = split
        prompt = batch.prompt(
            PromptRecord(
                text=prompt_text,
                key=text_key(prompt_text),
                metadata={"format": "hh"},
                line=line,
                messages=hh_turns(prompt_text),
            )
        )
        a = prompt.add(CompletionRecord(text=chosen_turn, model=HH_MODEL))
        b = prompt.add(CompletionRecord(text=rejected_turn, model=HH_MODEL))
        if a.key == b.key:
            problems.add(file, line, "rejected", "has the same last turn as chosen")
            continue
        shown = [a.key, b.key]
        batch.comparisons.append(
            ComparisonRecord(prompt.key, shown, votes=[VoteRecord(voter=f"hh-rlhf:{line}", shown=shown, choice="a")])
        )
    return batch


# --- LFQA expert pairs: overall_preference -1 = answer_a, 1 = answer_b, with justifications -------

LFQA_PREFERENCE = {-1: "a", 1: "b"}
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def read_lfqa(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="lfqa")
    file = path.name
    for line, row in iter_json_lines(path, problems):
        question = text_field(row, "question", file, line, problems)
        # The source writes line breaks as <br /> tags; annotators should see line breaks.
        answers = [HTML_BREAK.sub("\n", text_field(row, f"answer_{s}", file, line, problems)) for s in "ab"]
        types = [text_field(row, f"answer_{s}_type", file, line, problems) for s in "ab"]
        preference = row.get("overall_preference")
        if preference not in LFQA_PREFERENCE:
            problems.add(file, line, "overall_preference", "must be -1 (answer_a) or 1 (answer_b)")
            continue
        if not (question and all(answers) and all(types)):
            continue
        prompt = batch.prompt(PromptRecord(text=question, line=line))
        sides = [prompt.add(CompletionRecord(text=t, model=m)) for t, m in zip(answers, types)]
        if sides[0].key == sides[1].key:
            problems.add(file, line, "answer_b", "is identical to answer_a")
            continue
        shown = [s.key for s in sides]
        rationale = text_field(row, "justification", file, line, problems, required=False)
        vote = VoteRecord(voter=f"lfqa:{line}", shown=shown, choice=LFQA_PREFERENCE[preference], rationale=rationale)
        batch.comparisons.append(ComparisonRecord(prompt.key, shown, votes=[vote]))
    return batch


# --- Copilot Arena: code-completion battles, acceptedIndex = the completion the user accepted ----

COPILOT_CURSOR = "<|cursor|>"
COPILOT_COLUMNS = ("prefix", "suffix", "model_a", "model_b", "acceptedIndex", "completion_a", "completion_b")


def read_copilot_arena(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="copilot-arena")
    file = path.name
    for line, row in iter_csv_rows(path, problems, required_columns=COPILOT_COLUMNS):
        if not any(row[c] for c in COPILOT_COLUMNS if c != "prefix"):
            # The published file has one such row (only `prefix` set): not a battle.
            batch.skipped.append(f"{file}:{line}: only a prefix, no battle")
            continue
        prefix = row["prefix"]
        suffix = row["suffix"]
        completions = [text_field(row, f"completion_{s}", file, line, problems) for s in "ab"]
        models = [text_field(row, f"model_{s}", file, line, problems) for s in "ab"]
        accepted = row["acceptedIndex"].strip()
        if accepted not in ("0", "0.0", "1", "1.0"):
            problems.add(file, line, "acceptedIndex", "must be 0 (completion_a) or 1 (completion_b)")
            continue
        if not (all(completions) and all(models)):
            continue
        if not (prefix or suffix):
            problems.add(file, line, "prefix", "prefix and suffix are both empty")
            continue
        # Annotators see the code with the insertion point marked; the raw parts stay in metadata.
        prompt = batch.prompt(
            PromptRecord(
                text=prefix + COPILOT_CURSOR + suffix,
                key=text_key(prefix + "\x00" + suffix),
                category="code-completion",
                metadata={"prefix": prefix, "suffix": suffix, "kind": "fill-in-the-middle"},
                line=line,
            )
        )
        sides = [prompt.add(CompletionRecord(text=t, model=m)) for t, m in zip(completions, models)]
        if sides[0].key == sides[1].key:
            problems.add(file, line, "completion_b", "is identical to completion_a from the same model")
            continue
        shown = [s.key for s in sides]
        choice = "a" if accepted.startswith("0") else "b"
        batch.comparisons.append(
            ComparisonRecord(
                prompt.key, shown, votes=[VoteRecord(voter=f"copilot-arena:{line}", shown=shown, choice=choice)]
            )
        )
    return batch
