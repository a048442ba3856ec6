"""L1 triage of what a patient wrote: danger first, then intent, topic, tier and an answer.

:class:`Triager` turns a :class:`~suifang.core.triage.TriageRequest` into a
:class:`~suifang.core.triage.TriageResult`, locally and deterministically, in this order:

1. **Danger** (:mod:`suifang.tickets.danger`): clinical concepts in the text and its numbers.
   An emergency concept → ``emergency`` at L3, with the advice templates for the patient's
   120 message; an urgent one → ``urgent`` at L3 (a prescriber within hours); anything
   clinical at all (a symptom, a side effect, a reading) → a clinical ticket at L2 on the
   24/7 clinical clock. Danger outranks everything below: "the car park was full and my
   father fainted" is an emergency, not a parking complaint.
2. **Intent** (:mod:`suifang.tickets.intent`): a complaint, a suggestion, thanks or a
   question. A complaint or suggestion about a service goes to the department owning it and
   is never closed automatically; a complaint about a person goes by role (a doctor → medical
   affairs, a nurse → nursing). Thanks with nothing clinical in it is ``praise`` at L1: the
   caller acknowledges it and records it for the department, it opens no ticket.
   Whose feedback it is: the service the patient names, unless the feedback model
   (:mod:`suifang.tickets.feedback_owner`, trained on labelled complaints) is sure of another;
   a report or question with a word of grievance or suggestion that the model reads as
   feedback is feedback too.
3. **Topic** (:mod:`suifang.tickets.classifier`): the category when the text has no stronger
   signal.
4. **Answer** (:mod:`suifang.tickets.knowledge`): a question with nothing clinical in it
   (no symptom, no reading, no danger word, not even a denied one) may be answered from the
   knowledge base at L1, when the match clears the calibrated threshold.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from suifang.core.categories import CLINICAL_CATEGORIES, is_clinical
from suifang.core.categories import category as category_of
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.triage import Intent, KnowledgeAnswer, TriageRequest, TriageResult
from suifang.tickets.classifier import Classifier, Language, default_classifier, detect_language
from suifang.tickets.danger import DangerAssessment, DangerDetector, default_detector
from suifang.tickets.feedback_owner import FeedbackOwner, default_feedback_owner
from suifang.tickets.intent import IntentReader, IntentSignals, default_intent_reader
from suifang.tickets.knowledge import KnowledgeBase, default_knowledge_base
from suifang.tickets.second_opinion import SecondOpinion, default_second_opinion

__all__ = ["Triager", "classify", "default_triager"]

_DANGER_CONFIDENCE = {"emergency": 0.95, "urgent": 0.85, "clinical": 0.7}
_STRONG_COMPLAINT = ("投诉", "举报", "complain", "complaint")


class Triager:
    """The triage policy over the danger lexicon, the intent cues, the category model and
    the knowledge base."""

    def __init__(
        self,
        classifier: Classifier,
        detector: DangerDetector,
        intents: IntentReader,
        knowledge_base: KnowledgeBase,
        second_opinion: SecondOpinion | None = None,
        feedback_owner: FeedbackOwner | None = None,
    ) -> None:
        self.classifier = classifier
        self.detector = detector
        self.intents = intents
        self.knowledge_base = knowledge_base
        self.second_opinion = second_opinion
        self.feedback_owner = feedback_owner

    def classify(self, request: TriageRequest) -> TriageResult:
        text = request.text
        language = _known_locale(request.locale) or detect_language(text)
        danger = self.detector.assess(text, pathway_id=request.pathway_id)
        signals = self.intents.read(text)
        prediction = self.classifier.predict(text)
        level = danger.level
        red_flags = [f.concept for f in danger.emergencies]
        warning_signs = [f.concept for f in danger.at("urgent")]
        # Several steps below ask the knowledge base about the same text; it is ranked once,
        # and only if one of them asks.
        knowledge_answer = functools.cache(lambda: self.knowledge_base.answer(text, language))
        common = {
            "language": language,
            "red_flags": red_flags,
            "warning_signs": warning_signs,
            "advice": danger.advice,
            "sources": ["local"],
        }

        # "When unsure between emergency and not, choose emergency": an urgent finding is
        # raised too. On tuning set 6 before it was tuned on, that caught 6 of the lexicon's 8
        # missed emergencies (all read as urgent) and raised no non-emergency; it does page
        # for some urgent matters (a wound with pus, a near fall) — over-triage, accepted.
        if level != "emergency" and self._second_opinion_says_emergency(text, danger):
            return self._raised(prediction.category, danger, common)

        if level in ("emergency", "urgent"):
            top = danger.findings[0]
            category = self._clinical_category(prediction.category, top.category, danger)
            return TriageResult(
                category=category,
                urgency=Priority.EMERGENCY if level == "emergency" else Priority.URGENT,
                confidence=_DANGER_CONFIDENCE[level],
                intent="report",
                suggested_tier=Tier.L3,
                clinical=True,
                **common,
            )

        if signals.says_nothing and not danger.findings and not signals.asks:
            return TriageResult(
                category="other",
                urgency=Priority.ROUTINE,
                confidence=0.9,
                intent="nothing",
                suggested_tier=Tier.L1,
                clinical=False,
                **common,
            )

        if signals.request and knowledge_answer() is None:
            # "能不能…" that no entry answers asks the hospital to change something.
            signals = dataclasses.replace(signals, suggestion=signals.suggestion + signals.request)
        complaint = self._complaint(
            signals,
            prediction.category,
            text,
            level,
            text_model=self.classifier,
            answerable=lambda: knowledge_answer() is not None,
        )
        if complaint is not None:
            category, intent = complaint
            if self.feedback_owner is not None:
                category = self.feedback_owner.owner(text, category) or category
            answer = None
            if signals.asks and request.source is TicketSource.PATIENT_MESSAGE:
                # Information the patient may use meanwhile, from the service complained
                # about (a salty canteen meal gets no salt-and-blood-pressure advice); the
                # complaint stays open.
                answer = knowledge_answer()
                if answer is not None and self.knowledge_base.entries[answer.id].category != (
                    category
                ):
                    answer = None
            return self._feedback(category, intent, prediction.confidence, answer, common)

        unnamed = self._unnamed_feedback(text, signals)
        if level == "clinical":
            if unnamed is not None:
                return self._feedback(*unnamed, prediction.confidence, None, common)
            top = danger.findings[0]
            category = self._clinical_category(prediction.category, top.category, danger)
            return TriageResult(
                category=category,
                urgency=Priority.ROUTINE,
                confidence=_DANGER_CONFIDENCE["clinical"],
                intent="report",
                suggested_tier=Tier.L2,
                clinical=True,
                **common,
            )

        if signals.praise and not signals.asks and not signals.grievances:
            # "还疼，谢谢" and "大便颜色有点深，人挺好的" report a body, however thankful; so does
            # "退烧了，谢谢": a symptom that is over is news for the nurse, not a compliment.
            if danger.mentions - {"negated"} or (
                prediction.category in _SYMPTOMS and prediction.confidence >= _SURE
            ):
                return TriageResult(
                    category=(
                        prediction.category
                        if prediction.category in CLINICAL_CATEGORIES
                        else "clinical_symptom"
                    ),
                    urgency=Priority.ROUTINE,
                    confidence=round(max(prediction.confidence, 0.6), 4),
                    intent="report",
                    suggested_tier=Tier.L2,
                    clinical=True,
                    **common,
                )
            return TriageResult(
                category="praise",
                urgency=Priority.ROUTINE,
                confidence=round(max(prediction.confidence, 0.7), 4),
                intent="praise",
                suggested_tier=Tier.L1,
                clinical=False,
                **common,
            )

        answer = None
        intent: Intent = "question" if signals.asks else "other"
        if (
            request.source is TicketSource.PATIENT_MESSAGE
            and intent == "question"
            and not danger.findings
            and not (prediction.category in _SYMPTOMS and prediction.confidence >= _SURE)
        ):
            answer = knowledge_answer()
        if answer is None and unnamed is not None:
            return self._feedback(*unnamed, prediction.confidence, None, common)
        category = prediction.category
        if answer is not None:
            category = self.knowledge_base.entries[answer.id].category
        elif not danger.findings and (owner := _owner(signals)) is not None:
            category = owner
        elif category == "praise":
            category = "other"
        return TriageResult(
            category=category,
            urgency=Priority.ROUTINE,
            confidence=round(answer.confidence if answer else prediction.confidence, 4),
            intent=intent,
            suggested_tier=Tier.L1 if answer is not None else Tier.L2,
            clinical=is_clinical(category),
            knowledge_answer=answer,
            **common,
        )

    def _unnamed_feedback(self, text: str, signals: IntentSignals) -> tuple[str, Intent] | None:
        """``(service, intent)`` when a message the rules did not read as feedback is one: it
        has a word of grievance or suggestion or names a service, and the feedback model reads
        it as feedback ("病房厕所堵了两天都没人来修，一屋子味儿" mentions a smell, not a
        symptom). Only asked where nothing urgent was found and nothing answered it."""
        if self.feedback_owner is None or not (
            signals.grievances or signals.suggestion or signals.roles or signals.topics
        ):
            return None
        service = self.feedback_owner.likely_feedback(text, _owner(signals))
        if service is None:
            return None
        return service, "suggestion" if signals.suggestion > signals.grievances else "complaint"

    @staticmethod
    def _feedback(
        category: str,
        intent: Intent,
        confidence: float,
        answer: KnowledgeAnswer | None,
        common: dict[str, Any],
    ) -> TriageResult:
        """A complaint or suggestion for the service that owns it: a person answers it (L2),
        on business hours; an answer found for its question only informs meanwhile."""
        return TriageResult(
            category=category,
            urgency=Priority.ROUTINE,
            confidence=round(max(confidence, 0.6), 4),
            intent=intent,
            suggested_tier=Tier.L2,
            clinical=False,
            knowledge_answer=answer,
            **common,
        )

    def _second_opinion_says_emergency(self, text: str, danger: DangerAssessment) -> bool:
        """The learned model is sure it is an emergency where the lexicon saw none, did not
        hear every danger word it saw as denied, past or hypothetical, and there is no
        measurement the vitals limits judged (the model sees a number as 0)."""
        return (
            self.second_opinion is not None
            and not danger.only_denied
            and not danger.readings  # numbers are for the vitals limits: the model reads 0s
            and self.second_opinion.is_sure(danger.now or text)
        )

    @staticmethod
    def _raised(predicted: str, danger: DangerAssessment, common: dict[str, Any]) -> TriageResult:
        """An emergency on the second opinion: the lexicon's most serious concept, raised
        (its advice, its category), or a possible emergency with the general advice."""
        top = danger.findings[0] if danger.findings else None
        concept = top.concept if top is not None else "possible_emergency"
        advice = top.advice if top is not None and top.advice else "general_emergency"
        category = top.category if top is not None else predicted
        if not is_clinical(category):
            category = "clinical_symptom"
        return TriageResult(
            category=category,
            urgency=Priority.EMERGENCY,
            confidence=_DANGER_CONFIDENCE["urgent"],
            intent="report",
            suggested_tier=Tier.L3,
            clinical=True,
            **{
                **common,
                "red_flags": [concept],
                "warning_signs": [f.concept for f in danger.findings if f.concept != concept],
                "advice": [advice],
                "sources": [*common["sources"], "second_opinion"],
            },
        )

    @staticmethod
    def _clinical_category(predicted: str, found: str, danger: DangerAssessment) -> str:
        """The ticket's category for a health matter: the danger's own, unless the model saw
        a more specific clinical topic for a non-emergency (a side effect is medication)."""
        if (
            danger.level != "emergency"
            and predicted in CLINICAL_CATEGORIES
            and found == "clinical_symptom"
        ):
            return predicted
        return found

    @staticmethod
    def _complaint(
        signals: IntentSignals,
        predicted: str,
        text: str,
        level: str | None,
        *,
        text_model: Classifier,
        answerable: Callable[[], bool],
    ) -> tuple[str, Intent] | None:
        """``(category, intent)`` of a complaint or suggestion about a service, else None.

        A complaint may mention a body or a medicine ("the nurse was rough taking blood, my
        arm is bruised", "the canteen food put me off eating"): with only a mild clinical
        word in it (nothing urgent), what the patient wants still decides.
        """
        lowered = text.lower()
        strong = any(word in lowered for word in _STRONG_COMPLAINT)
        known = category_of(predicted)
        service = known is not None and known.kind in ("service", "feedback")
        about, likelihood = next(
            (
                (category, probability)
                for category, probability in text_model.ranked(text)
                if (found := category_of(category)) is not None
                and found.kind == "service"
                and category != "other"
            ),
            (None, 0.0),
        )
        named = bool(signals.roles or signals.topics)
        if not (signals.grievances or signals.suggestion):
            # A word about a service or a member of staff, nothing clinical, no thanks and
            # no question: feedback for the department that owns it ("the wifi is useless");
            # or how a doctor or nurse behaved, whatever else it mentions.
            # A question about how someone behaved that nothing answers ("is that really how
            # you treat a 78-year-old?") is one too.
            rhetorical = signals.asks and bool(signals.roles and signals.conduct)
            if (
                not signals.praise
                and (not signals.asks or (rhetorical and not answerable()))
                and (
                    (level is None and named)
                    or (level == "clinical" and signals.roles and signals.conduct)
                )
            ):
                intent: Intent = "complaint"
            else:
                return None
        elif level == "clinical" and not (named or strong or likelihood >= _SERVICE_LIKELY):
            return None
        elif signals.grievances and (service or named or strong or level == "clinical"):
            intent = "complaint"
        elif signals.suggestion and (service or named or level == "clinical"):
            intent = "suggestion"
        else:
            return None
        owner = _owner(signals)
        if owner is not None:
            return owner, intent
        if known is not None and known.kind == "service" and predicted != "other":
            return predicted, intent
        if about is not None and likelihood >= _SERVICE_LIKELY:
            return about, intent
        return ("suggestion" if intent == "suggestion" else "other"), intent


# Topics that name where something happened more than what it is about ("the doctor called
# my mum 'the diabetic in bed 12'" is about the doctor, not the beds).
_INCIDENTAL = frozenset({"environment"})


def _owner(signals: IntentSignals) -> str | None:
    """Whose feedback it is: a service desk named (the cashier, the insurance office); a
    doctor or nurse when it is about how they behaved or nothing more specific is named; else
    the service most named."""
    roles, topics = signals.roles, signals.topics
    if roles and category_of(roles[0]) is not None and roles[0] not in _CONDUCT_ROLES:
        return roles[0]
    if roles and (signals.conduct or not topics or topics[0] in _INCIDENTAL):
        return roles[0]
    return topics[0] if topics else None


_CONDUCT_ROLES = frozenset({"doctor_conduct", "nursing_care", "staff_attitude"})
# A question the model is sure is about symptoms or the mind is for a person, even when the
# lexicon found no word it knows: no automatic answer.
_SYMPTOMS = frozenset({"clinical_symptom", "psychological"})
_SURE = 0.5
# How likely a service must be for a complaint that does not name it to go to its owner.
_SERVICE_LIKELY = 0.25


def _known_locale(locale: str | None) -> Language | None:
    if not locale:
        return None
    lowered = locale.lower()
    if lowered.startswith("zh"):
        return "zh-CN"
    if lowered.startswith("en"):
        return "en"
    return None


@functools.cache
def default_triager() -> Triager:
    return Triager(
        default_classifier(),
        default_detector(),
        default_intent_reader(),
        default_knowledge_base(),
        default_second_opinion(),
        default_feedback_owner(),
    )


def classify(request: TriageRequest) -> TriageResult:
    """Triage one message with the built-in lexicon, cues, model and knowledge base."""
    return default_triager().classify(request)
