"""Streams: cut a dataset into time segments and train/test a method segment by segment."""

from recbole_lightemb.stream.loader import Segment, stream_segments
from recbole_lightemb.stream.runner import run_stream
from recbole_lightemb.stream.segments import check_stream_config, segment_bounds, split_segments

__all__ = ["Segment", "check_stream_config", "run_stream", "segment_bounds", "split_segments", "stream_segments"]
