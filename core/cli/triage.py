"""``suifang triage`` and ``suifang kb``: check the triage data, try a message, measure a corpus."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
import yaml

from suifang.core.cli.output import emit_json
from suifang.core.errors import ValidationFailed
from suifang.core.rendering import MessageRenderer
from suifang.core.seed import default_routing
from suifang.core.triage import TriageRequest
from suifang.tickets.danger import DangerDetector, default_detector, triage_file
from suifang.tickets.evaluation import evaluate, load_corpus
from suifang.tickets.feedback_owner import load_owner_examples, owner_label
from suifang.tickets.intent import IntentReader
from suifang.tickets.knowledge import (
    KnowledgeBase,
    builtin_knowledge_dir,
    default_knowledge_base,
    load_synonyms,
)
from suifang.tickets.second_opinion import load_examples
from suifang.tickets.triage import classify

triage_app = typer.Typer(help="The triage: danger lexicon, intents, knowledge base.")
kb_app = typer.Typer(help="The knowledge base the automatic tier answers from.")


@triage_app.command("check")
def check(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="A directory with red_flags.yaml, intents.yaml and/or synonyms.yaml to check "
            "(default: the files in use)."
        ),
    ] = None,
    knowledge: Annotated[
        Path | None, typer.Option(help="A knowledge-base directory to check as well.")
    ] = None,
) -> None:
    """Validate the triage data files; every problem is named with file:line."""

    def pick(name: str) -> Path | None:
        if directory is None:
            return triage_file(name)
        path = directory / name
        return path if path.exists() else None

    if directory is not None and not directory.is_dir():
        raise ValidationFailed(f"{directory}: not a directory")
    detector = DangerDetector.load(pick("red_flags.yaml"))
    IntentReader.load(pick("intents.yaml"))
    synonyms = load_synonyms(pick("synonyms.yaml"))
    directories = [builtin_knowledge_dir(), *([knowledge] if knowledge else [])]
    kb = KnowledgeBase.load(*directories, synonyms=pick("synonyms.yaml"))
    _check_advice(detector)
    examples = load_examples(pick("emergency_examples.csv"))
    owners = load_owner_examples(pick("feedback_examples.csv"))
    groups = len(detector.spec.groups)
    concepts = len(detector.spec.concepts)
    print(
        f"ok: {concepts} concepts over {groups} word groups, {len(synonyms)} synonym groups, "
        f"{len(kb.entries)} knowledge-base entries, {len(examples)} second-opinion examples, "
        f"{len(owners)} feedback examples"
    )


def _check_advice(detector: object) -> None:
    renderer = MessageRenderer()
    spec = detector.spec  # type: ignore[attr-defined]
    names = {c.advice for c in spec.concepts if c.advice} | {
        rule.advice for rules in spec.vitals.values() for rule in rules if rule.advice
    }
    missing = [
        f"advice {name!r} has no template messages/{locale}/advice/{name}.j2"
        for name in sorted(names)
        for locale in ("zh-CN", "en")
        if not renderer.has(f"advice/{name}", locale)
    ]
    if missing:
        raise ValidationFailed("invalid red-flag lexicon\n  " + "\n  ".join(missing))


@triage_app.command("try")
def try_(
    text: Annotated[str, typer.Argument(help="What a patient wrote.")],
    pathway: Annotated[str | None, typer.Option(help="The patient's pathway, e.g. pci.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Triage TEXT as a patient message and show why (nothing is stored or sent)."""
    result = classify(TriageRequest(text=text, pathway_id=pathway))
    findings = default_detector().assess(text, pathway_id=pathway).findings
    if as_json:
        emit_json(
            {
                "result": result.model_dump(mode="json"),
                "findings": [
                    {
                        "concept": f.concept,
                        "level": f.level,
                        "status": f.status,
                        "words": f.evidence,
                    }
                    for f in findings
                ],
            }
        )
        return
    print(
        f"{result.urgency} · {result.suggested_tier} · {result.intent} · {result.category}"
        f"{' · clinical' if result.clinical else ''}"
    )
    for finding in findings:
        print(f"  {finding.level:9} {finding.concept} ({finding.status}): {finding.evidence}")
    if result.knowledge_answer:
        print(f"  answer: {result.knowledge_answer.id} ({result.knowledge_answer.confidence:.2f})")


@triage_app.command("evaluate")
def evaluate_(
    corpus: Annotated[Path, typer.Argument(help="A labelled corpus CSV (see docs/triage.md).")],
    misses: Annotated[
        bool,
        typer.Option(help="List missed and false emergencies, misrouted feedback, wrong answers."),
    ] = False,
) -> None:
    """Measure the triage on a labelled corpus: recall and precision per class, safety."""
    table = default_routing()
    departments = {
        d["code"] for d in yaml.safe_load((_TEMPLATES / "departments.yaml").read_text("utf-8"))
    }
    evaluation = evaluate(
        load_corpus(corpus), classify, routing_table=table, departments=departments
    )
    print(evaluation.report())
    if misses:
        for o in evaluation.missed_emergencies:
            print(f"missed emergency ({o.row.concept}), line {o.row.line}: {o.row.text}")
        for o in evaluation.clinical_answered_automatically:
            why = f"{o.row.label}; {o.result.intent}"
            print(f"clinical at L1 ({why}), line {o.row.line}: {o.row.text}")
        for o in evaluation.false_emergencies:
            flags = ", ".join(o.result.red_flags) or "-"
            print(f"false emergency ({o.row.label}; {flags}), line {o.row.line}: {o.row.text}")
        for o in evaluation.misrouted_feedback:
            print(f"to {o.department}, not {o.row.department}, line {o.row.line}: {o.row.text}")
        for o in evaluation.wrong_answers:
            answer = o.result.knowledge_answer.id if o.result.knowledge_answer else "-"
            print(f"answered {answer}, line {o.row.line}: {o.row.text}")


@triage_app.command("examples")
def examples(
    corpus: Annotated[Path, typer.Argument(help="A labelled corpus CSV, e.g. the tuning one.")],
    out: Annotated[
        Path, typer.Argument(help="Where to write the examples, e.g. templates/triage/…")
    ],
) -> None:
    """Write the second opinion's training examples (text,language,emergency) from a corpus.

    Use the tuning corpus, never the held-out one: a model trained on what measures it
    measures nothing.
    """
    if corpus.name.startswith("heldout"):
        raise ValidationFailed(f"{corpus}: the held-out corpus is for measuring only")
    rows = load_corpus(corpus)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "language", "emergency"])
        for row in rows:
            writer.writerow([row.text, row.language, "yes" if row.label == "emergency" else "no"])
    emergencies = sum(row.label == "emergency" for row in rows)
    print(f"{out}: {len(rows)} examples, {emergencies} of them emergencies")


@triage_app.command("owner-examples")
def owner_examples(
    corpus: Annotated[Path, typer.Argument(help="A labelled corpus CSV, e.g. the tuning one.")],
    out: Annotated[
        Path, typer.Argument(help="Where to write the examples, e.g. templates/triage/…")
    ],
) -> None:
    """Write the feedback model's training examples (text,language,owner) from a corpus.

    A complaint's or suggestion's department becomes the service category the default routing
    table sends there; thanks, clinical reports and questions are labelled as what they are.
    Use the tuning corpus, never the held-out one.
    """
    if corpus.name.startswith("heldout"):
        raise ValidationFailed(f"{corpus}: the held-out corpus is for measuring only")
    rows = load_corpus(corpus)
    table = default_routing()
    labelled = []
    for row in rows:
        try:
            owner = owner_label(row.label, row.department, table)
        except ValidationFailed as exc:
            raise ValidationFailed(f"{corpus}:{row.line}: {exc}") from None
        labelled.append((row.text, row.language, owner))
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "language", "owner"])
        writer.writerows(labelled)
    feedback = sum(owner not in ("praise", "clinical", "question") for *_, owner in labelled)
    print(f"{out}: {len(labelled)} examples, {feedback} of them complaints or suggestions")


_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@kb_app.command("list")
def kb_list(
    due: Annotated[
        bool, typer.Option("--due", help="Only entries due for review (review_by passed).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The knowledge-base entries: id, category, owner, review date."""
    kb = default_knowledge_base()
    today = dt.date.today()
    entries = kb.due_for_review(today) if due else sorted(kb.entries.values(), key=lambda e: e.id)
    if as_json:
        emit_json(
            [
                {
                    "id": e.id,
                    "category": e.category,
                    "owner": e.owner,
                    "reviewed_on": e.reviewed_on,
                    "review_by": e.review_by,
                }
                for e in entries
            ]
        )
        return
    for entry in entries:
        flag = " (review due)" if entry.due_for_review(today) else ""
        print(f"{entry.id:36} {entry.category:16} {entry.owner:18} {entry.review_by}{flag}")
    print(f"{len(entries)} entries" + (" due for review" if due else ""))
