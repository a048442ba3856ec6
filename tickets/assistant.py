"""Optional AI at L1: a language model asked to second-guess the local triage — never to weaken it.

Off by default. Turned on with ``SUIFANG_AI_TRIAGE_ENABLED=true`` and an OpenAI-compatible
chat endpoint (Qwen, DeepSeek, a hospital's own vLLM)::

    SUIFANG_AI_TRIAGE_BASE_URL=http://10.0.0.5:8000/v1
    SUIFANG_AI_TRIAGE_MODEL=qwen2.5-14b-instruct
    SUIFANG_AI_TRIAGE_API_KEY=…            # if the endpoint wants one

The local triage runs first, always. The model then sees the message and the knowledge-base
entries the local retrieval ranked highest, and answers in JSON: how urgent, and which entry
(if any) answers the question. What it may change:

- **urgency only upwards**: it can turn a routine message urgent or an emergency (flagged
  ``ai_flagged``), never the other way; a local red flag stays a red flag;
- **the answer only from the knowledge base**: it may pick one of the offered entries for a
  question the local triage found nothing clinical in, or withdraw an automatic answer; it
  never writes the text a patient receives.

A timeout, an HTTP error or a malformed reply leaves the local result as it was. The message
text goes to the endpoint: use one inside the hospital's network, under its data agreements.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from suifang.core.categories import CLINICAL_CATEGORIES
from suifang.core.enums import Priority, Tier
from suifang.core.triage import KnowledgeAnswer, TriageRequest, TriageResult
from suifang.tickets.knowledge import KnowledgeBase, default_knowledge_base

__all__ = ["AI_FLAG", "AiTriageSettings", "AssistedTriager", "default_assistant"]

log = logging.getLogger("suifang.triage.ai")

AI_FLAG = "ai_flagged"
"""The concept id an AI escalation is recorded under (red flag or warning sign)."""
_CANDIDATES = 5
_SYSTEM_PROMPT = """You help a hospital follow-up service triage messages from discharged \
patients. Reply with one JSON object and nothing else:
{"urgency": "emergency" | "urgent" | "routine",
 "answer_id": one of the candidate ids, or null,
 "reason": a few words, no patient details}
emergency: the person may be in danger now (call 120): chest pain, breathing difficulty, \
heavy bleeding, stroke signs, fainting, suicidal thoughts, very low blood sugar, severe pain.
urgent: a clinician should look within hours.
answer_id: only for a routine information question that a candidate answers exactly; null \
when the message reports a symptom, a complaint, or anything a person should read."""


class AiTriageSettings(BaseSettings):
    """``SUIFANG_AI_TRIAGE_*``: the chat endpoint the assistant calls."""

    model_config = SettingsConfigDict(
        env_prefix="SUIFANG_AI_TRIAGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    enabled: bool = False
    base_url: str = Field("", description="An OpenAI-compatible API base, e.g. http://host/v1")
    model: str = ""
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(8.0, gt=0, le=60)


class _Verdict(BaseModel):
    urgency: Literal["emergency", "urgent", "routine"]
    answer_id: str | None = None
    reason: str = ""


_RANK = {Priority.ROUTINE: 0, Priority.URGENT: 1, Priority.EMERGENCY: 2}


class AssistedTriager:
    """The local triage, then the model's second opinion merged in (see the module)."""

    def __init__(
        self,
        settings: AiTriageSettings,
        knowledge_base: KnowledgeBase,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.knowledge_base = knowledge_base
        self._http = http or httpx.Client(timeout=settings.timeout_seconds)

    def refine(self, request: TriageRequest, local: TriageResult) -> TriageResult:
        candidates = [
            match.entry for match in self.knowledge_base.ranked(request.text, limit=_CANDIDATES)
        ]
        try:
            verdict = self._ask(request.text, candidates)
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("AI triage unavailable, local result kept: %s", type(exc).__name__)
            return local
        return self._merge(local, verdict, {entry.id for entry in candidates}, request)

    def _ask(self, text: str, candidates: list[Any]) -> _Verdict:
        offered = [
            {"id": entry.id, "question": entry.questions["en"][0], "topic": entry.category}
            for entry in candidates
        ]
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        response = self._http.post(
            self.settings.base_url.rstrip("/") + "/chat/completions",
            headers=headers,
            json={
                "model": self.settings.model,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": _SYSTEM_PROMPT},
                    {
                        "role": "user",
                        "content": json.dumps(
                            {"message": text[:2000], "candidates": offered}, ensure_ascii=False
                        ),
                    },
                ],
            },
        )
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        try:
            return _Verdict.model_validate_json(_json_object(content))
        except ValidationError as exc:
            raise ValueError("the model's reply is not the JSON asked for") from exc

    def _merge(
        self, local: TriageResult, verdict: _Verdict, offered: set[str], request: TriageRequest
    ) -> TriageResult:
        update: dict[str, Any] = {"sources": [*local.sources, f"ai:{self.settings.model}"]}
        wanted = Priority(verdict.urgency)
        if _RANK[wanted] > _RANK[local.urgency]:
            update.update(
                urgency=wanted,
                suggested_tier=Tier.L3,
                clinical=True,
                knowledge_answer=None,
                intent="report",
            )
            if wanted is Priority.EMERGENCY:
                update["red_flags"] = [*local.red_flags, AI_FLAG]
                update["advice"] = local.advice or ["general_emergency"]
            else:
                update["warning_signs"] = [*local.warning_signs, AI_FLAG]
            if local.category not in CLINICAL_CATEGORIES:
                update["category"] = "clinical_symptom"
            return local.model_copy(update=update)
        safe_to_answer = (
            local.urgency is Priority.ROUTINE
            and wanted is Priority.ROUTINE
            and local.intent in ("question", "other")
            and not local.warning_signs
            and not local.red_flags
        )
        if not safe_to_answer or verdict.answer_id is None:
            if local.knowledge_answer is not None and verdict.answer_id is None:
                # The model thinks a person should read it: that is only more careful.
                update.update(knowledge_answer=None, suggested_tier=Tier.L2)
            return local.model_copy(update=update)
        if verdict.answer_id not in offered or verdict.answer_id not in self.knowledge_base.entries:
            return local.model_copy(update=update)
        entry = self.knowledge_base.entries[verdict.answer_id]
        locale = "en" if local.language == "en" else "zh-CN"
        answer = KnowledgeAnswer(
            id=entry.id,
            question=entry.questions[locale][0],
            answer=entry.answer[locale],
            confidence=max(
                local.knowledge_answer.confidence if local.knowledge_answer else 0.0, 0.5
            ),
        )
        update.update(
            knowledge_answer=answer,
            suggested_tier=Tier.L1,
            category=entry.category,
        )
        return local.model_copy(update=update)


def _json_object(content: str) -> str:
    """The JSON object in a model's reply (some wrap it in a code fence or a sentence)."""
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the model's reply")
    return content[start : end + 1]


@functools.cache
def default_assistant() -> AssistedTriager | None:
    """The assistant the settings ask for, or None (off, or not set up: then a warning)."""
    settings = AiTriageSettings()
    if not settings.enabled:
        return None
    if not settings.base_url or not settings.model:
        log.warning(
            "SUIFANG_AI_TRIAGE_ENABLED is set but SUIFANG_AI_TRIAGE_BASE_URL or _MODEL is not: "
            "triage stays local"
        )
        return None

    return AssistedTriager(settings, default_knowledge_base())
