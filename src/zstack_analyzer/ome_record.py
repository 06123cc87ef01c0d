"""Our metadata records as an OME data model (``ome_types.OME``).

Why: bioio's ``ome_metadata`` and other OME tools expect the OME model; this
describes the canonical arrays our readers return (one ``Image`` per scene,
RGB samples as one channel with ``SamplesPerPixel=3``), built only from what
the records say: a value the file does not state is left out, never guessed.
OME requires positive sizes, so a negative Z step (a stack taken downwards) is
written as its magnitude; the sign stays in our record and in bioio's
``physical_pixel_sizes``. Needs ``ome-types`` (the ``bioio`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ome_types import OME
from ome_types.model import (
    Channel,
    Image,
    Instrument,
    InstrumentRef,
    MetadataOnly,
    Microscope,
    Objective,
    Objective_Immersion,
    ObjectiveSettings,
    Pixels,
    Pixels_DimensionOrder,
    PixelType,
    UnitsLength,
    UnitsTime,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from zstack_analyzer.metadata import ChannelInfo, ImageMetadata

__all__ = ["record_to_image", "records_to_ome"]

_PIXEL_TYPES = {
    "uint8": PixelType.UINT8,
    "uint16": PixelType.UINT16,
    "uint32": PixelType.UINT32,
    "int8": PixelType.INT8,
    "int16": PixelType.INT16,
    "int32": PixelType.INT32,
    "float32": PixelType.FLOAT,
    "float64": PixelType.DOUBLE,
    "complex64": PixelType.COMPLEXFLOAT,
    "complex128": PixelType.COMPLEXDOUBLE,
    "bool": PixelType.BIT,
}

_IMMERSIONS = {item.value.lower(): item for item in Objective_Immersion}


def _positive(value: float | None) -> float | None:
    """``|value|`` when it is a usable OME PositiveFloat, else ``None``."""
    if value is None or value == 0 or value != value:  # None, 0 or NaN
        return None
    return abs(value)


def _channel(record: ImageMetadata, scene: int, c: int, info: ChannelInfo | None) -> Channel:
    fields: dict[str, Any] = {
        "id": f"Channel:{scene}:{c}",
        "samples_per_pixel": record.samples_per_pixel,
    }
    if info is not None:
        fields["name"] = info.name
        if (ex := _positive(info.excitation_nm)) is not None:
            fields["excitation_wavelength"] = ex
            fields["excitation_wavelength_unit"] = UnitsLength.NANOMETER
        if (em := _positive(info.emission_nm)) is not None:
            fields["emission_wavelength"] = em
            fields["emission_wavelength_unit"] = UnitsLength.NANOMETER
        if info.color:
            fields["color"] = info.color
        if info.fluorophore:
            fields["fluor"] = info.fluorophore
    return Channel(**fields)


def record_to_image(record: ImageMetadata, *, instrument_id: str | None = None) -> Image:
    """One OME ``Image`` (with ``Pixels`` and ``Channel`` elements) for one scene's record."""
    scene = record.scene_index
    by_index = {ch.index: ch for ch in record.channels}
    pixels: dict[str, Any] = {
        "id": f"Pixels:{scene}",
        "dimension_order": Pixels_DimensionOrder.XYZCT,
        "type": _PIXEL_TYPES[record.dtype],
        "size_x": record.size_x,
        "size_y": record.size_y,
        "size_z": record.size_z,
        "size_c": record.size_c * record.samples_per_pixel,
        "size_t": record.size_t,
        "channels": [_channel(record, scene, c, by_index.get(c)) for c in range(record.size_c)],
        "metadata_only": MetadataOnly(),
    }
    if record.significant_bits:
        pixels["significant_bits"] = record.significant_bits
    size = record.physical_size
    for axis, value in (("x", size.x_um), ("y", size.y_um), ("z", size.z_um)):
        if (um := _positive(value)) is not None:
            pixels[f"physical_size_{axis}"] = um
            pixels[f"physical_size_{axis}_unit"] = UnitsLength.MICROMETER
    if (dt := _positive(record.time_interval_s)) is not None:
        pixels["time_increment"] = dt
        pixels["time_increment_unit"] = UnitsTime.SECOND
    image: dict[str, Any] = {
        "id": f"Image:{scene}",
        "name": record.scene_name,
        "pixels": Pixels(**pixels),
    }
    acquired = record.acquired_at or record.acquired_at_local
    if acquired is not None:
        image["acquisition_date"] = acquired
    if instrument_id is not None:
        image["instrument_ref"] = InstrumentRef(id=instrument_id)
        if record.objective is not None:
            image["objective_settings"] = ObjectiveSettings(id=f"Objective:{scene}:0")
    return Image(**image)


def _instrument(record: ImageMetadata) -> Instrument | None:
    """The microscope and objective of one scene, or ``None`` when the file names neither."""
    if record.microscope is None and record.objective is None:
        return None
    index = record.scene_index
    fields: dict[str, Any] = {"id": f"Instrument:{index}"}
    if (m := record.microscope) is not None:
        fields["microscope"] = Microscope(
            manufacturer=m.manufacturer, model=m.model, serial_number=m.serial_number
        )
    if (o := record.objective) is not None:
        objective: dict[str, Any] = {"id": f"Objective:{index}:0", "model": o.name}
        if (mag := _positive(o.magnification)) is not None:
            objective["nominal_magnification"] = mag
        if o.numerical_aperture is not None and o.numerical_aperture > 0:
            objective["lens_na"] = o.numerical_aperture
        if o.immersion:
            objective["immersion"] = _IMMERSIONS.get(
                o.immersion.strip().lower(), Objective_Immersion.OTHER
            )
        fields["objectives"] = [Objective(**objective)]
    return Instrument(**fields)


def records_to_ome(records: Sequence[ImageMetadata]) -> OME:
    """An ``OME`` with one ``Image`` (``Image:<scene>``) per record, in order, and instruments.

    Examples
    --------
    >>> from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, PhysicalSize
    >>> md = ImageMetadata(filename="a.tif", file_format="TIFF", size_x=4, size_y=3, size_c=1,
    ...                    dtype="uint16", bit_depth=16, physical_size=PhysicalSize(x_um=0.5),
    ...                    channels=[ChannelInfo(index=0, name="DAPI", emission_nm=461.0)])
    >>> ome = records_to_ome([md])
    >>> px = ome.images[0].pixels
    >>> px.physical_size_x, px.physical_size_x_unit.value, px.channels[0].name
    (0.5, 'µm', 'DAPI')
    """
    images = []
    instruments = []
    for record in records:
        instrument = _instrument(record)
        if instrument is not None:
            instruments.append(instrument)
        images.append(
            record_to_image(record, instrument_id=instrument.id if instrument is not None else None)
        )
    return OME(images=images, instruments=instruments, creator="zstack-analyzer")
