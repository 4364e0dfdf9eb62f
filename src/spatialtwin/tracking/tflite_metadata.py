"""TFLite model metadata that MediaPipe Tasks needs to feed an image to a float model.

The npm `@mediapipe/pose` models were exported for the legacy solution graph, which normalises
pixels itself, so they carry no TFLite metadata. MediaPipe Tasks instead reads the image
normalisation (and colour space) from a `TFLITE_METADATA` buffer inside the model, a
`ModelMetadata` flatbuffer with file identifier `M001`; without it a float image input is
refused. The wheel's metadata writer does not import in mediapipe 1.2.2, but the flatbuffer
schemas it ships (`schema_py_generated`, `metadata_schema_py_generated`) have an object API with
`Pack`, which is all that adding the buffer needs.

Reference: TensorFlow Lite metadata schema, `metadata_schema.fbs` (shipped in the wheel).
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
from mediapipe.tasks.metadata import schema_py_generated as tflite_fb

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
# The oldest metadata parser that understands image properties and normalisation options.
MIN_PARSER_VERSION = "1.0.0"


@dataclass(frozen=True)
class ImageInputSpec:
    """How pixel values in 0..255 map to the model's float input: (pixel - mean) / std."""

    name: str
    description: str
    mean: float
    std: float


def image_metadata(spec: ImageInputSpec) -> bytes:
    """A `ModelMetadata` flatbuffer describing one RGB image input with normalisation."""
    norm = meta_fb.NormalizationOptionsT()
    norm.mean = [float(spec.mean)]
    norm.std = [float(spec.std)]
    unit = meta_fb.ProcessUnitT()
    unit.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
    unit.options = norm

    props = meta_fb.ImagePropertiesT()
    props.colorSpace = meta_fb.ColorSpaceType.RGB
    content = meta_fb.ContentT()
    content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    content.contentProperties = props

    image = meta_fb.TensorMetadataT()
    image.name = "image"
    image.description = "RGB image, normalised as (pixel - mean) / std"
    image.content = content
    image.processUnits = [unit]

    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]

    model = meta_fb.ModelMetadataT()
    model.name = spec.name
    model.description = spec.description
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


def with_image_metadata(model_bytes: bytes, spec: ImageInputSpec) -> bytes:
    """The TFLite model with its `TFLITE_METADATA` buffer set (replaced if already present).

    Raises ValueError if `model_bytes` is not a TFLite flatbuffer with one image input.
    """
    if model_bytes[4:8] != TFLITE_FILE_IDENTIFIER:
        raise ValueError("not a TFLite model (file identifier is not TFL3)")
    model = tflite_fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not model.subgraphs or len(model.subgraphs[0].inputs) != 1:
        raise ValueError("expected a TFLite model with one subgraph and one image input")

    payload = image_metadata(spec)
    buffer = tflite_fb.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = tflite_fb.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model.buffers) - 1
    kept = [
        m
        for m in (model.metadata or [])
        if (m.name.decode() if isinstance(m.name, bytes) else m.name) != METADATA_BUFFER_NAME
    ]
    model.metadata = [*kept, entry]

    builder = flatbuffers.Builder(len(model_bytes) + len(payload) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def read_image_normalisation(model_bytes: bytes) -> tuple[float, float] | None:
    """(mean, std) of the image input from a model's metadata, or None if it has none."""
    model = tflite_fb.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != METADATA_BUFFER_NAME.encode():
            continue
        data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
        if data[4:8] != METADATA_FILE_IDENTIFIER:
            return None
        meta = meta_fb.ModelMetadataT.InitFromPackedBuf(bytearray(data), 0)
        options = meta.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0].options
        return float(options.mean[0]), float(options.std[0])
    return None
