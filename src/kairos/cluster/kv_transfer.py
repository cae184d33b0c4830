"""A P/D KV transfer overlapped with its prefill, layer by layer: what is left to send when the prefill ends.

A prefill of P seconds over L layers finishes layer k at k * P / L, and layer k's KV
(B / L of the B bytes) may leave as soon as it is computed. On a link of bandwidth W
the sender finishes at

    f = max over k of (k * P / L + (L - k + 1) * B / (L * W))
      = max(P / L + B / W,  P + B / (L * W))        (linear in k: an end wins)

so when the prefill ends, still to send are

    bytes_after_prefill = W * (f - P) = max(B / L,  B - W * P * (L - 1) / L)

and the last byte arrives latency + bytes_after_prefill / W after the prefill's end.
Without overlap all B bytes go after it: latency + B / W. The last layer's KV can only
leave once the prefill ends, so overlap never lets a transfer finish with it, and never
makes one slower.

Assumptions: layers take equal time and hold equal KV; the part sent during the prefill
has the link to itself (only `bytes_after_prefill` competes with other transfers, when
started on a `TransferLink` at the prefill's end); the latency is paid once, by the
last byte.
"""

from __future__ import annotations

from kairos.hardware import Link


def bytes_after_prefill(nbytes: float, bandwidth: float, prefill_s: float, num_layers: int) -> float:
    """Bytes still to send when the prefill ends, each layer's KV having left as soon as it was computed."""
    if num_layers < 1:
        raise ValueError(f"a model has at least one layer, got {num_layers}")
    if nbytes < 0 or prefill_s < 0 or bandwidth <= 0:
        raise ValueError(f"need bytes >= 0, prefill_s >= 0, bandwidth > 0; got {nbytes}, {prefill_s}, {bandwidth}")
    overlapped = bandwidth * prefill_s * (num_layers - 1) / num_layers
    return max(nbytes / num_layers, nbytes - overlapped)


def exposed_transfer_s(nbytes: float, link: Link, prefill_s: float, num_layers: int, overlap: bool = True) -> float:
    """Seconds from the prefill's end to the transfer's end, on a link with nothing else to carry."""
    left = bytes_after_prefill(nbytes, link.bandwidth, prefill_s, num_layers) if overlap else nbytes
    return link.transfer_time(left)
