"""The HL7 v2 MLLP listener: TCP, each message framed 0x0B … 0x1C 0x0D, one ACK per message.

Framing is the ``hl7`` library's (``hl7.mllp``); every message goes to
:func:`suifang.workflows.hl7_intake.receive`, which stores it before anything else. A
connection carries any number of messages in turn, as integration engines send them. What
the listener cannot read still gets an answer where it can: bytes outside a frame get AR; a
frame over ``SUIFANG_HL7_MAX_MESSAGE_BYTES`` gets AR and the connection is closed (the rest
of that frame cannot be told from a new one); a connection idle for ``idle_timeout`` seconds
or closed mid-frame is dropped. One bad connection never stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hl7.mllp import InvalidBlockError, MLLPStreamReader, MLLPStreamWriter, start_hl7_server

from suifang.core.runtime import Runtime
from suifang.workflows.hl7_intake import receive
from suifang.workflows.hl7_messages import Rejected, acknowledgement, read_header

__all__ = ["frame", "serve_mllp"]

log = logging.getLogger(__name__)

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"


def frame(message: bytes) -> bytes:
    """``message`` in its MLLP envelope."""
    return START_BLOCK + message + END_BLOCK


async def serve_mllp(
    runtime: Runtime,
    host: str | None = None,
    port: int | None = None,
    *,
    idle_timeout: float = 300.0,
) -> asyncio.Server:
    """Start listening (returns the started server; close it to stop)."""
    settings = runtime.settings
    limit = settings.hl7_max_message_bytes

    async def connected(reader: MLLPStreamReader, writer: MLLPStreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    block = await asyncio.wait_for(reader.readblock(), timeout=idle_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return  # closed, idle or cut mid-frame: nothing whole arrived to answer
                except InvalidBlockError:
                    await _answer(writer, _refusal("bytes outside an MLLP frame (no 0x0B)"))
                    continue
                except ValueError:
                    await _answer(writer, _refusal(f"message larger than {limit} bytes"))
                    return
                try:
                    receipt = await receive(runtime, block, transport="mllp")
                    answer = receipt.ack_bytes
                except Exception as exc:  # noqa: BLE001 -- the sender resends what we could not take
                    # The type only: the error's text may carry a statement's parameters.
                    log.error("HL7 message from %s not taken (%s)", peer, type(exc).__name__)
                    answer = _refusal("temporarily unable to process; resend later", block)
                await _answer(writer, answer)
        except ConnectionError:
            return
        finally:
            writer.close()

    return await start_hl7_server(
        connected,
        host or settings.hl7_mllp_host,
        port if port is not None else settings.hl7_mllp_port,
        limit=limit,
    )


def _refusal(reason: str, block: bytes | None = None) -> bytes:
    """An AR, echoing the message's control id (MSA-2) when its MSH can be read."""
    header = None
    if block is not None:
        with contextlib.suppress(Rejected):
            header = read_header(block)
    return acknowledgement(header, "AR", reason=reason, error_code=207).encode("utf-8")


async def _answer(writer: MLLPStreamWriter, ack: bytes) -> None:
    writer.writeblock(ack)
    await writer.drain()
