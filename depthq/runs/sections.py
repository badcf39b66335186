"""The sections this layer composes into evaluations, registered for reading results back:
the codec anchors (``depthq.evaluate.anchor_section``) and the real .dqz files
(``depthq.codec.section``)."""

from __future__ import annotations

from depthq.codec.section import CodecSection
from depthq.evaluate.anchor_section import AnchorSection
from depthq.evaluate.sections import register_section

register_section("anchors", AnchorSection.from_dict)
register_section("codec", CodecSection.from_dict)
