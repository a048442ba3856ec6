"""The channel contract suite: what every channel plugin must do, checked against a fake of
its own provider.

Write a fake of your provider's documented API (an object with the :class:`FakeProvider`
methods), then subclass :class:`ChannelContract` in a test module; pytest runs every check::

    from suifang.testing.channel_contract import ChannelContract

    class TestMyGatewayContract(ChannelContract):
        channel_class = MyGatewayChannel
        settings = {"url": "https://gw.example/send", "token": "t0k3n-for-tests"}
        address = "13800138000"

        def provider(self) -> MyGatewayFake:
            return MyGatewayFake()

The checks: a send reaches the provider and returns its id; the same message sent twice is
delivered once (the idempotency key is honoured); the provider's permanent, recipient and
temporary failures, a network failure and a garbled answer are classified as the delivery
cascade needs; no secret setting appears in a log record, an error or a settings view; a
signed webhook is parsed into the patient's reply and a wrongly signed one is refused; a
replayed webhook has the same fingerprint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal, Protocol

import httpx
import pytest
from pydantic import SecretStr

from suifang.core.channels import (
    Channel,
    ChannelError,
    DeliveryReceipt,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
)
from suifang.core.contacts import SYSTEM_PATTERN, contact_system

__all__ = ["ChannelContract", "Failure", "FakeProvider"]

Failure = Literal["permanent", "recipient", "transient", "rate_limited"]
"""The provider failures the contract asks the fake to answer with, as the real provider does:

``permanent``
    refused for a reason retrying will not fix that is not about the recipient (our
    credentials, a template, the account) → :class:`PermanentChannelError`;
``recipient``
    the address is wrong or gone (unknown user, invalid number, unsubscribed) →
    :class:`PermanentRecipientError` (suifang marks that contact failed);
``transient``
    the provider is down or broken for now (5xx, its "system busy") →
    :class:`TransientChannelError`;
``rate_limited``
    too many requests → :class:`TransientChannelError`.
"""


class FakeProvider(Protocol):
    """A fake of a channel's provider, implementing the provider's documented API."""

    delivered: list[Any]
    """One entry per message the provider actually delivered (after its own dedupe)."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request as the provider does (the channel's ``httpx`` transport)."""
        ...

    def fail_next(self, failure: Failure) -> None:
        """Answer the next send request with this failure, exactly as the provider would."""
        ...

    def inbound_request(
        self, sender: str, text: str, *, valid_signature: bool = True
    ) -> InboundRequest:
        """The provider's webhook call carrying a patient's reply ``text`` from ``sender``,
        signed as the provider signs (with a wrong signature when ``valid_signature`` is
        False)."""
        ...


class ChannelContract:
    """Subclass as ``Test…`` with ``channel_class``, ``settings``, ``address`` and
    :meth:`provider`; every ``test_*`` below then runs against your channel."""

    channel_class: ClassVar[type[Channel]]
    """The channel under test."""
    settings: ClassVar[dict[str, Any]] = {}
    """Its settings, as ``load_config(**settings)`` takes them (field names)."""
    address: ClassVar[str] = ""
    """A recipient address the fake provider knows."""
    accepts_inbound: ClassVar[bool] = True
    """False for a channel whose provider never calls back (no webhook checks then)."""

    def provider(self) -> FakeProvider:
        """A new fake of the provider (override)."""
        raise NotImplementedError("ChannelContract subclasses implement provider()")

    # ----------------------------------------------------------------- fixtures

    @pytest.fixture
    def fake(self) -> FakeProvider:
        """A new fake provider for each test (from :meth:`provider`)."""
        return self.provider()

    @pytest.fixture
    async def channel(self, fake: FakeProvider) -> AsyncIterator[Channel]:
        """The channel built from ``settings``, talking to ``fake`` (``httpx.MockTransport``)."""
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as http:
            yield self.channel_class(self.channel_class.load_config(**self.settings), http=http)

    def message(self, key: str = "journey-1-abc:day3") -> OutboundMessage:
        """A message as the platform hands it to ``send``."""
        return OutboundMessage(
            idempotency_key=key,
            patient_id=1,
            address=self.address,
            subject="术后第3天随访",
            body="您好，术后第3天随访：伤口有无红肿？请回复 1 无 / 2 有。",
            metadata={"kind": "touchpoint"},
        )

    def secrets(self) -> list[str]:
        """The secret settings' values: every ``SecretStr`` field of the channel's config."""
        config = self.channel_class.load_config(**self.settings)
        values = [
            getattr(config, name).get_secret_value()
            for name in type(config).model_fields
            if isinstance(getattr(config, name), SecretStr)
        ]
        return [value for value in values if len(value) >= 4]

    async def _with_transport(
        self, handler: Callable[[httpx.Request], httpx.Response]
    ) -> BaseException | DeliveryReceipt:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            channel = self.channel_class(self.channel_class.load_config(**self.settings), http=http)
            try:
                return await channel.send(self.message())
            except Exception as exc:  # noqa: BLE001 -- the contract classifies what came out
                return exc

    # ----------------------------------------------------------------- the checks

    def test_it_declares_a_name_and_a_contact_system(self) -> None:
        """A lower-case name without spaces; a contact system, if any, of the allowed shape."""
        name = getattr(self.channel_class, "name", "")
        assert name, "a channel needs a name"
        assert name == name.lower(), f"channel names are lower case: {name!r}"
        assert " " not in name, f"channel names have no spaces: {name!r}"
        system = contact_system(self.channel_class)
        if system is not None:
            assert re.fullmatch(SYSTEM_PATTERN, system), (
                f"contact system {system!r} must match {SYSTEM_PATTERN}"
            )

    async def test_a_send_reaches_the_provider_and_returns_its_id(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """A send is delivered once and returns a receipt with the provider's message id."""
        receipt = await channel.send(self.message())
        assert isinstance(receipt, DeliveryReceipt), receipt
        assert receipt.provider_message_id, "the receipt must carry the provider's message id"
        assert len(fake.delivered) == 1, fake.delivered

    async def test_the_same_message_sent_twice_is_delivered_once(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """A retried activity sends again with the same idempotency key (after a timeout
        the first send may have gone through): the provider must deliver it once."""
        first = await channel.send(self.message())
        again = await channel.send(self.message())
        assert isinstance(again, DeliveryReceipt)
        assert len(fake.delivered) == 1, (
            "the provider delivered the same message twice: pass the idempotency key "
            f"the way the provider dedupes ({fake.delivered})"
        )
        assert again.provider_message_id == first.provider_message_id

    async def test_a_permanent_refusal_is_permanent_and_not_about_the_recipient(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """A refusal retrying cannot fix is permanent, and does not blame the address."""
        fake.fail_next("permanent")
        with pytest.raises(PermanentChannelError) as raised:
            await channel.send(self.message())
        assert not isinstance(raised.value, PermanentRecipientError), (
            "only an error about the address may mark the patient's contact failed"
        )

    async def test_a_wrong_or_gone_recipient_is_a_recipient_error(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """An unknown or unsubscribed address marks the contact failed."""
        fake.fail_next("recipient")
        with pytest.raises(PermanentRecipientError):
            await channel.send(self.message())

    @pytest.mark.parametrize("failure", ["transient", "rate_limited"])
    async def test_a_temporary_failure_is_transient(
        self, channel: Channel, fake: FakeProvider, failure: Failure
    ) -> None:
        """The provider's outages and rate limits are retried."""
        fake.fail_next(failure)
        with pytest.raises(TransientChannelError):
            await channel.send(self.message())

    @pytest.mark.parametrize(
        "failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("timed out")]
    )
    async def test_a_network_failure_is_transient(self, failure: httpx.HTTPError) -> None:
        """A refused connection or a timeout is retried (``send_request`` does this)."""

        def unreachable(request: httpx.Request) -> httpx.Response:
            raise failure

        outcome = await self._with_transport(unreachable)
        assert isinstance(outcome, TransientChannelError), outcome

    async def test_a_garbled_answer_is_a_classified_error(self) -> None:
        """A provider answering 200 with an HTML error page must not crash the plugin with a
        KeyError: the cascade can act only on a ChannelError."""

        def garbled(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, text="<html>502 Bad Gateway</html>")

        outcome = await self._with_transport(garbled)
        assert isinstance(outcome, ChannelError), outcome

    async def test_no_secret_reaches_a_log_an_error_or_the_settings_view(
        self,
        channel: Channel,
        fake: FakeProvider,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Secret settings never appear in logs (httpx logs URLs), errors or the settings
        view: keep them out of URLs and messages."""
        secrets = self.secrets()
        caplog.set_level(logging.DEBUG)
        said: list[str] = [repr(await channel.send(self.message("k-ok")))]
        for failure in ("permanent", "recipient", "transient", "rate_limited"):
            fake.fail_next(failure)  # type: ignore[arg-type]
            try:
                said.append(repr(await channel.send(self.message(f"k-{failure}"))))
            except Exception as exc:  # noqa: BLE001 -- its text is what is checked
                said.extend([str(exc), repr(exc)])
        if self.accepts_inbound:
            for valid in (True, False):
                request = fake.inbound_request(self.address, "好的", valid_signature=valid)
                try:
                    said.append(repr(await channel.parse_inbound(request)))
                except InboundRejected as exc:
                    said.append(str(exc))
        prefix = self.channel_class.env_prefix()
        for field, value in self.settings.items():
            monkeypatch.setenv(f"{prefix}{field.upper()}", str(value))
        said.extend(self.channel_class.settings_view().values())
        said.extend(record.getMessage() for record in caplog.records)
        for secret in secrets:
            leaks = [text for text in said if secret in text]
            assert not leaks, f"a secret setting's value appears in: {leaks[:3]}"

    async def test_a_signed_webhook_is_the_patient_s_reply(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """A correctly signed callback becomes the patient's reply, answered as the provider
        expects."""
        if not self.accepts_inbound:
            pytest.skip("this channel accepts no webhook")
        items = await channel.parse_inbound(fake.inbound_request(self.address, "伤口不红，谢谢"))
        replies = [item for item in items if isinstance(item, InboundMessage)]
        assert replies, items
        assert replies[0].sender == self.address
        assert replies[0].text == "伤口不红，谢谢"
        assert replies[0].channel == self.channel_class.name
        body, media_type = channel.inbound_response(items)
        assert isinstance(body, str), body
        assert media_type, "inbound_response() must name the media type of its body"

    async def test_a_wrongly_signed_webhook_is_refused(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """A callback signed with another secret is refused with 401 or 403."""
        if not self.accepts_inbound:
            pytest.skip("this channel accepts no webhook")
        forged = fake.inbound_request(self.address, "伤口不红", valid_signature=False)
        with pytest.raises(InboundRejected) as raised:
            await channel.parse_inbound(forged)
        assert raised.value.status_code in (401, 403), raised.value.status_code

    async def test_a_replayed_webhook_is_recognised_and_another_is_not(
        self, channel: Channel, fake: FakeProvider
    ) -> None:
        """suifang remembers each accepted call's fingerprint: a replay must match it, and
        another reply must not (or it would be dropped as a replay)."""
        if not self.accepts_inbound:
            pytest.skip("this channel accepts no webhook")
        request = fake.inbound_request(self.address, "好的")
        other = fake.inbound_request(self.address, "伤口有点痒")
        for call in (request, other):
            await channel.parse_inbound(call)
        replay = request.model_copy()
        assert channel.replay_fingerprint(replay) == channel.replay_fingerprint(request)
        assert channel.replay_fingerprint(other) != channel.replay_fingerprint(request)
