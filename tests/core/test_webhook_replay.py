"""The webhook replay cache and the rejection log, on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlmodel import Session, col, select

from suifang.core.models import WebhookRejection, WebhookReplay
from suifang.core.security.replay import ClaimOutcome, ReplayScope, claim, settle
from suifang.core.security.webhook_rejections import record_rejection

DAY = dt.timedelta(days=1)


def take(session: Session, fingerprint: str = "f" * 64, **kwargs: object):  # type: ignore[no-untyped-def]
    return claim(
        session,
        channel="sms",
        scope=ReplayScope.REQUEST,
        fingerprint=fingerprint,
        retention=DAY,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_claim_is_taken_once_and_a_repeat_is_a_duplicate(session: Session) -> None:
    first = take(session)
    assert first.outcome is ClaimOutcome.OWNED
    assert take(session).outcome is ClaimOutcome.BUSY  # still being processed
    settle(session, [first], succeeded=True)
    repeat = take(session)
    assert (repeat.outcome, repeat.replay_id) == (ClaimOutcome.DUPLICATE, first.replay_id)
    # Scopes and channels are separate spaces.
    other = claim(
        session, channel="webhook", scope=ReplayScope.REQUEST, fingerprint="f" * 64, retention=DAY
    )
    assert other.outcome is ClaimOutcome.OWNED


def test_a_failed_or_abandoned_claim_is_taken_over_with_its_effect_key(session: Session) -> None:
    first = take(session)
    settle(session, [first], succeeded=False)
    retry = take(session)
    assert (retry.outcome, retry.effect_key) == (ClaimOutcome.OWNED, first.effect_key)
    # A process that died mid-way leaves "processing": after stale_after, a retry takes it.
    assert take(session).outcome is ClaimOutcome.BUSY
    session.execute(
        update(WebhookReplay)
        .where(col(WebhookReplay.id) == retry.replay_id)
        .values(claimed_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    )
    session.commit()
    taken = take(session)
    assert (taken.outcome, taken.effect_key) == (ClaimOutcome.OWNED, first.effect_key)
    assert take(session).outcome is ClaimOutcome.BUSY  # only one retry wins


def test_request_fingerprints_expire_and_message_ids_are_kept(session: Session) -> None:
    request = take(session, "a" * 64, stale_after=DAY)
    message = claim(
        session, channel="sms", scope=ReplayScope.MESSAGE, fingerprint="b" * 64, retention=None
    )
    settle(session, [request, message], succeeded=True)
    session.execute(
        update(WebhookReplay)
        .where(col(WebhookReplay.id) == request.replay_id)
        .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    )
    session.commit()
    take(session, "c" * 64)  # any claim prunes what has expired
    kept = session.exec(select(WebhookReplay.fingerprint)).all()
    assert sorted(kept) == ["b" * 64, "c" * 64]


def test_rejections_keep_metadata_only_and_the_oldest_are_pruned(session: Session) -> None:
    body = "患者张三 13800138000".encode() * 100
    ids = [
        record_rejection(
            session,
            channel="sms",
            source="203.0.113.9",
            reason=f"refusal {n}",
            status_code=401,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer secret"},
            query={"token": "aliyun-secret", "timestamp": "1700000000"},
            keep=3,
        )
        for n in range(5)
    ]
    rows = session.exec(select(WebhookRejection).order_by(col(WebhookRejection.id))).all()
    assert [r.id for r in rows] == ids[-3:]
    assert [r.reason for r in rows] == ["refusal 2", "refusal 3", "refusal 4"]
    assert rows[0].headers == {
        "content-type": "application/json",
        "query": {"timestamp": "1700000000"},
    }
    assert rows[0].size == len(body)
    stored = repr([r.model_dump() for r in rows])
    for secret in ("张三", "13800138000", "Bearer", "aliyun-secret"):
        assert secret not in stored
