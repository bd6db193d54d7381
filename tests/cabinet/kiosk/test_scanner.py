"""The serial QR scanner adapter on a real pty: each line is one payload, junk is dropped."""

from __future__ import annotations

import asyncio
import os
import tty

from cabinet.kiosk.scanner import SerialScanner


async def test_lines_from_a_serial_scanner_become_payloads_on_the_loop() -> None:
    controller, device = os.openpty()
    tty.setraw(device)  # as a scanner's port would be: no echo, no line discipline
    path = os.ttyname(device)
    loop = asyncio.get_running_loop()
    got: list[str] = []
    done = asyncio.Event()

    def on_payload(text: str) -> None:
        assert asyncio.get_running_loop() is loop  # handed over, not called on the thread
        got.append(text)
        if len(got) == 3:
            done.set()

    scanner = SerialScanner(path, on_payload, baud=9600).start()
    try:
        assert await asyncio.to_thread(scanner.opened.wait, 5)
        # CR LF, a bare CR, a payload split across writes, blank lines and bytes that are
        # not text between them.
        for chunk in (
            b"LKR1:cab1:12345678\r\n",
            b"\r\n\xff\xfe\x00\n",
            b"LKR1:cab1:",
            b"87654321\r",
        ):
            os.write(controller, chunk)
            await asyncio.sleep(0.02)  # separate reads, as a slow serial line delivers them
        os.write(controller, b"  SF1001  \n")
        await asyncio.wait_for(done.wait(), 5)
    finally:
        scanner.close()
        os.close(controller)
        os.close(device)
    assert got == ["LKR1:cab1:12345678", "LKR1:cab1:87654321", "SF1001"]
    assert scanner.lines_read == 3 and scanner.lines_dropped == 1


async def test_a_missing_scanner_port_is_retried_not_fatal() -> None:
    scanner = SerialScanner("/dev/nonexistent-scanner", lambda _t: None).start()
    assert scanner.alive  # it waits to retry the open rather than dying
    scanner.close()  # and stops promptly even while it waits
    assert not scanner.alive
