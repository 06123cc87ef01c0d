"""What one benchmark process does: our call or a baseline's, prepared then timed.

Why this shape: every figure must come from a fresh process with its imports done
before the clock starts (bench/README "How a figure is measured"). A case is a
function that does the imports and any untimed preparation and returns the
zero-argument callable that child.py times. Heavy imports stay inside the
functions, so the same module runs in .venv (ours, tifffile, pylibCZIrw) and in
.venv-bench (bioio) without importing the other side's packages.

Each callable returns a small JSON-able dict (shape, PNG size, ...) that the run
prints as evidence that the work was really done.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np

THUMB_SIZE = 256
# Default composite colours of the baselines (DAPI blue, GFP green, mCherry magenta).
COLOURS = ((0.2, 0.4, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0))


# --------------------------------------------------------------------- helpers
def _downsample(plane: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Block mean so the longer side is at most ``size`` (what a thumbnail needs)."""
    import numpy as np

    h, w = plane.shape[:2]
    f = max(1, -(-max(h, w) // size))
    hh, ww = (h // f) * f, (w // f) * f
    if f == 1:
        return plane.astype(np.float32)
    view = plane[:hh, :ww].reshape(hh // f, f, ww // f, f)
    return view.mean(axis=(1, 3), dtype=np.float32)


def _png(planes: Sequence[np.ndarray]) -> bytes:
    """Percentile-stretched composite (grey for one channel) encoded as PNG bytes."""
    import numpy as np
    from PIL import Image

    small = [_downsample(p) for p in planes]
    norm = []
    for s in small:
        lo, hi = np.percentile(s, (1.0, 99.0))
        scale = 1.0 / (hi - lo) if hi > lo else 0.0
        norm.append(np.clip((s - lo) * scale, 0.0, 1.0))
    if len(norm) == 1:
        img = Image.fromarray((norm[0] * 255.0 + 0.5).astype(np.uint8), mode="L")
    else:
        rgb = np.zeros((*norm[0].shape, 3), np.float32)
        for i, n in enumerate(norm):
            rgb += n[..., None] * np.asarray(COLOURS[i % len(COLOURS)], np.float32)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        img = Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_info(data: bytes) -> dict[str, Any]:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    with Image.open(io.BytesIO(data)) as img:
        return {"png_bytes": len(data), "png_size": list(img.size), "png_mode": img.mode}


def _preimport(args: dict[str, Any], *, ours: bool) -> None:
    """Do before the clock the imports a call would otherwise do lazily on first use.

    Why: the clock covers work, not imports (import time is its own record). Our
    registry imports reader modules and the format's package on the first call;
    a baseline imports its library at the top. ``args["preimport"]`` names the
    third-party modules of the file's format (tifffile, pylibCZIrw.czi, ...).
    """
    import importlib

    for name in args.get("preimport", []):
        if not ours and name.startswith(("zstack_analyzer", "defusedxml")):
            continue  # our own helpers: only our side uses them
        if ours and name == "dask.array":
            # The way our readers import it (leaving xarray and scipy for later); a plain
            # import here would measure an import our call never does.
            from zstack_analyzer._dask_import import dask_array

            dask_array()
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            if ours:
                raise
    if ours:
        from zstack_analyzer.registry import reader_classes

        reader_classes()
    try:
        from PIL import Image
    except ImportError:
        return
    Image.preinit()  # the PNG plugin, loaded by Pillow on first save


# ---------------------------------------------------------------- import record
def ours_import(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    def work() -> dict[str, Any]:
        import zstack_analyzer

        return {"module": zstack_analyzer.__name__}

    return work


# ------------------------------------------------------------------- metadata
def ours_metadata(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from zstack_analyzer import open_image

    _preimport(args, ours=True)
    path = args["path"]

    def work() -> dict[str, Any]:
        with open_image(path) as image:
            md = image.metadata(0)
        ps = md.physical_size
        return {
            "sizes": [md.size_t, md.size_c, md.size_z, md.size_y, md.size_x],
            "channels": [c.name for c in md.channels],
            "voxel_um": [ps.x_um, ps.y_um, ps.z_um] if ps is not None else None,
            "format": md.file_format,
        }

    return work


def tifffile_metadata(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import xml.etree.ElementTree as ET

    import tifffile

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape, axes = series.shape, series.axes
            ome = tf.ome_metadata
        root = ET.fromstring(ome or "<OME/>")  # noqa: S314
        pixels = next(el for el in root.iter() if el.tag.endswith("}Pixels"))
        channels = [el.get("Name") for el in pixels if el.tag.endswith("}Channel")]
        voxel = [pixels.get(f"PhysicalSize{a}") for a in "XYZ"]
        return {"shape": list(shape), "axes": axes, "channels": channels, "voxel_um": voxel}

    return work


def czi_metadata(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from pylibCZIrw import czi as pyczi

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with pyczi.open_czi(path) as doc:
            bbox = doc.total_bounding_box
            md = doc.metadata["ImageDocument"]["Metadata"]
        info = md["Information"]["Image"]
        chans = info["Dimensions"]["Channels"]["Channel"]
        chans = chans if isinstance(chans, list) else [chans]
        scaling = md["Scaling"]["Items"]["Distance"]
        return {
            "bbox": {k: list(v) for k, v in bbox.items()},
            "channels": [c.get("@Name") for c in chans],
            "scaling_m": [d.get("Value") for d in scaling],
        }

    return work


def czi_metadata_dict(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """pylibCZIrw's own open + its ``metadata`` dict (the whole XML as a dict), nothing picked.

    Why not ``czi_metadata``: real files lack elements it indexes (no Channels in
    an RGB file), and the point is the library's full cost of "give me the metadata".
    """
    from pylibCZIrw import czi as pyczi

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with pyczi.open_czi(path) as doc:
            bbox = doc.total_bounding_box
            md = doc.metadata
        return {"bbox": {k: list(v) for k, v in bbox.items()}, "keys": len(md)}

    return work


def bioio_metadata(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from bioio import BioImage

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        img = BioImage(path)
        dims = img.dims
        pps = img.physical_pixel_sizes
        names = img.channel_names
        return {
            "dims": str(dims),
            "shape": list(dims.shape),
            "voxel_um": [pps.X, pps.Y, pps.Z],
            "channels": list(names),
            "reader": type(img.reader).__module__,
        }

    return work


# --------------------------------------------------------------- lazy / load
def ours_lazy_open(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import asyncio

    from zstack_analyzer import ImageLoader

    _preimport(args, ours=True)
    path = args["path"]
    loader = ImageLoader()

    def work() -> dict[str, Any]:
        array, _md = asyncio.run(loader.load_image(path, lazy=True))
        return {
            "type": type(array).__module__,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
        }

    return work


def tifffile_open(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import tifffile

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        tf = tifffile.TiffFile(path)
        series = tf.series[0]
        out = {"shape": list(series.shape), "dtype": str(series.dtype), "axes": series.axes}
        tf.close()
        return out

    return work


def ours_load(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import asyncio

    import numpy as np

    from zstack_analyzer import ImageLoader

    _preimport(args, ours=True)
    path = args["path"]
    loader = ImageLoader()

    def work() -> dict[str, Any]:
        array, _md = asyncio.run(loader.load_image(path, lazy=False))
        assert isinstance(array, np.ndarray), type(array)
        return {"shape": list(array.shape), "probe": int(array[1, 5, 1000, 1000])}

    return work


def _tile_decode_floor(path: str, threads: int) -> np.ndarray:
    """Decode every tile with imagecodecs on ``threads`` threads into one fresh array."""
    from concurrent.futures import ThreadPoolExecutor

    import imagecodecs
    import numpy as np
    import tifffile

    decoders = {8: imagecodecs.deflate_decode, 32946: imagecodecs.deflate_decode}
    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        pages = list(series.pages)
        first = pages[0]
        assert first.is_tiled and first.predictor == 1, "floor expects tiles without predictor"
        decode = decoders[int(first.compression)]
        th, tw = first.tilelength, first.tilewidth
        h, w = first.shape
        out = np.empty(series.shape, series.dtype)
        flat = out.reshape(-1, h, w)
        across = -(-w // tw)
        fd = os.open(path, os.O_RDONLY)
        try:

            def one_page(i: int) -> None:
                tile = np.empty((th, tw), series.dtype)
                tile_bytes = tile.reshape(-1).view(np.uint8)
                page = pages[i]
                for j, (off, cnt) in enumerate(
                    zip(page.dataoffsets, page.databytecounts, strict=True)
                ):
                    decode(os.pread(fd, cnt, off), out=tile_bytes)
                    ty, tx = divmod(j, across)
                    y0, x0 = ty * th, tx * tw
                    hh, ww = min(th, h - y0), min(tw, w - x0)
                    flat[i, y0 : y0 + hh, x0 : x0 + ww] = tile[:hh, :ww]

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one_page, range(len(pages))))
        finally:
            os.close(fd)
    return out


def decode_floor(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import imagecodecs  # noqa: F401  (imported before the clock)
    import numpy as np  # noqa: F401
    import tifffile  # noqa: F401

    _preimport(args, ours=False)
    path, threads = args["path"], int(args.get("threads", 2))

    def work() -> dict[str, Any]:
        out = _tile_decode_floor(path, threads)
        return {"shape": list(out.shape), "probe": int(out[5, 1, 1000, 1000])}

    return work


# ------------------------------------------------------------------ thumbnails
def _render_spec(args: dict[str, Any]) -> Any:
    from zstack_analyzer.render.spec import RenderSpec

    fields = dict(args.get("spec", {}))
    if fields.get("channels") is not None:
        fields["channels"] = tuple(fields["channels"])
    return RenderSpec(**fields)


def ours_render(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from zstack_analyzer.render.thumbnails import render_file

    _preimport(args, ours=True)
    path = args["path"]
    spec = _render_spec(args)

    def work() -> dict[str, Any]:
        result = render_file(path, spec)  # no cache: every call renders
        data = getattr(result, "data", result)
        info = _png_info(bytes(data))
        info["from_cache"] = getattr(result, "from_cache", None)
        return info

    return work


def tifffile_page_png(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import numpy as np  # noqa: F401
    import tifffile
    from PIL import Image  # noqa: F401

    _preimport(args, ours=False)
    path, z, c = args["path"], int(args["z"]), int(args.get("c", 0))

    def work() -> dict[str, Any]:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            size_c = series.shape[series.axes.index("C")] if "C" in series.axes else 1
            plane = series.pages[z * size_c + c].asarray()
        return _png_info(_png([plane]))

    return work


def streamed_mip_floor(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Read each uncompressed plane into a reused buffer and fold it in with np.maximum."""
    import numpy as np
    import tifffile
    from PIL import Image  # noqa: F401

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            assert series.axes == "ZCYX", series.axes
            _, size_c, h, w = series.shape
            pages = list(series.pages)
            offsets = []
            for page in pages:
                assert page.is_contiguous, "floor expects contiguous planes"
                offsets.append(page.dataoffsets[0])
            dtype = series.dtype
        acc = np.zeros((size_c, h, w), dtype)
        buf = np.empty((h, w), dtype)
        view = memoryview(buf.reshape(-1).view(np.uint8))
        with open(path, "rb", buffering=0) as fh:
            for i, off in enumerate(offsets):
                fh.seek(off)
                n = fh.readinto(view)
                assert n == buf.nbytes
                np.maximum(acc[i % size_c], buf, out=acc[i % size_c])
        return _png_info(_png(list(acc)))

    return work


def czi_plane_loop_mip(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import numpy as np
    from PIL import Image  # noqa: F401
    from pylibCZIrw import czi as pyczi

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with pyczi.open_czi(path) as doc:
            bbox = doc.total_bounding_box
            size_z = bbox["Z"][1] - bbox["Z"][0]
            size_c = bbox["C"][1] - bbox["C"][0]
            acc: list[np.ndarray] = []
            for c in range(size_c):
                mip = None
                for z in range(size_z):
                    plane = doc.read(plane={"C": c, "Z": z, "T": 0})[..., 0]
                    mip = plane.copy() if mip is None else np.maximum(mip, plane, out=mip)
                assert mip is not None
                acc.append(mip)
        return _png_info(_png(acc))

    return work


def bioio_mip(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import numpy as np
    from bioio import BioImage
    from PIL import Image  # noqa: F401

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        img = BioImage(path)
        data = img.get_image_dask_data("CZYX")
        mip = np.asarray(data.max(axis=1).compute())
        return _png_info(_png(list(mip)))

    return work


# ------------------------------------------------------------------- uploads
def disk_write_fsync(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The upload baseline: the same bytes written to the same file system, then fsync."""
    src, dst = args["src"], args["dst"]
    chunk = 1024 * 1024

    def work() -> dict[str, Any]:
        buf = bytearray(chunk)
        view = memoryview(buf)
        total = 0
        with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
            while n := fin.readinto(view):
                fout.write(view[:n])
                total += n
            os.fsync(fout.fileno())
        return {"bytes": total}

    return work


# --------------------------------------------------------------- OME-Zarr (#14)
def _fresh_out(args: dict[str, Any]) -> str:
    """A new output path under ``args["out_dir"]`` (removed with the whole folder by the run)."""
    import uuid

    return os.path.join(args["out_dir"], f"{uuid.uuid4().hex}.ome.zarr")


def ours_convert(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from zstack_analyzer.zarr.writer import convert

    _preimport(args, ours=True)
    import dask.array  # noqa: F401  (imported by convert on first use)
    import numcodecs  # noqa: F401
    import zarr  # noqa: F401

    out = _fresh_out(args)

    def work() -> dict[str, Any]:
        result = convert(args["path"], out, ngff="0.4")
        return {"levels": result.levels[0], "out": out}

    return work


def ome_zarr_py_convert(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """ome-zarr-py's write_image of the same source: tifffile's zarr store through dask.

    Same NGFF (0.4 on zarr v2), chunks (one plane), levels (2x down to <= 512 px,
    by ``scale_factors``) and compressor (Blosc LZ4, shuffle) as ours.
    """
    import warnings

    import dask.array as da
    import tifffile
    import zarr
    from numcodecs import Blosc
    from ome_zarr.format import FormatV04

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_image

    _preimport(args, ours=False)
    out = _fresh_out(args)

    def work() -> dict[str, Any]:
        with tifffile.TiffFile(args["path"]) as tif:
            series = tif.series[0]
            axes = series.axes
            store = series.aszarr()
            array = da.from_zarr(zarr.open_array(store, mode="r"))
            order = [axes.index(a) for a in "TCZYX" if a in axes]
            array = array.transpose(order)
            for position, axis in enumerate("TCZYX"):
                if axis not in axes:
                    array = da.expand_dims(array, position)
            y, x = array.shape[3:]
            factors, side = [], max(y, x)
            while side > 512:
                side = (side + 1) // 2
                factors.append(2 ** (len(factors) + 1))
            group = zarr.open_group(out, mode="w-", zarr_format=2)
            write_image(
                array,
                group,
                fmt=FormatV04(),
                axes="tczyx",
                scale_factors=factors,
                storage_options={
                    "chunks": (1, 1, 1, y, x),
                    "compressor": Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
                },
            )
            store.close()
        return {"levels": len(factors) + 1, "shape": list(array.shape), "out": out}

    return work


# ------------------------------------------------------------- issue 16 formats
def tifffile_lsm_metadata(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The same fields our LSM metadata gives, read with tifffile alone."""
    import tifffile

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape, axes = series.shape, series.axes
            lsm = tf.lsm_metadata
        colours = lsm.get("ChannelColors") or {}
        voxel = [lsm.get(f"VoxelSize{a}", 0) * 1e6 for a in "XYZ"]
        stamps = list(lsm.get("TimeStamps", []))
        return {
            "shape": list(shape),
            "axes": axes,
            "channels": colours.get("ColorNames"),
            "colours": colours.get("Colors"),
            "voxel_um": voxel,
            "stamps": len(stamps),
            "objective": (lsm.get("ScanInformation") or {}).get("Objective"),
        }

    return work


def pydicom_wsi_png(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """pydicom decodes every frame, the tiles are assembled, then the usual 256 px PNG."""
    import numpy as np
    import pydicom

    _preimport(args, ours=False)
    path = args["path"]

    def work() -> dict[str, Any]:
        ds = pydicom.dcmread(path)
        frames = ds.pixel_array
        if frames.ndim == 2 or (frames.ndim == 3 and int(ds.SamplesPerPixel) == 3):
            frames = frames[np.newaxis]
        rows, cols = int(ds.Rows), int(ds.Columns)
        height, width = int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)
        across = -(-width // cols)
        plane = np.zeros(
            (-(-height // rows) * rows, across * cols, *frames.shape[3:]), frames.dtype
        )
        for k in range(-(-height // rows) * across):
            r, c = divmod(k, across)
            plane[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = frames[k]
        plane = plane[:height, :width]
        grey = plane.mean(axis=-1) if plane.ndim == 3 else plane
        return _png_info(_png([grey]))

    return work


# ------------------------------------------------------------ issue 13: batch/200
def _batch_files(args: dict[str, Any]) -> list[str]:
    folder = args["folder"]
    return sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if not name.startswith(".")
    )


def _batch_summary(results: list[Any], cache_dir: str) -> dict[str, Any]:
    import shutil

    ok = sum(1 for r in results if r.status == "ok" and r.thumbnail_ready)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return {
        "files": len(results),
        "thumbnails": ok,
        "processes": len({r.pid for r in results}),
        "failed": [r.error for r in results if r.status != "ok"][:3],
    }


def ours_batch_many(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The batch path: thumbnails_of_many starts a LocalCluster (inside the clock)."""
    import tempfile

    import distributed  # noqa: F401  (import time is not the figure)

    from zstack_analyzer.batch import thumbnails_of_many

    _preimport({"preimport": TIFF_CZI_MODULES}, ours=True)
    files = _batch_files(args)

    def work() -> dict[str, Any]:
        cache_dir = tempfile.mkdtemp(prefix="zstack-batch-")
        results = thumbnails_of_many(files, cache_dir, expected=len(files))
        return _batch_summary(results, cache_dir)

    return work


def serial_many(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The baseline: the same per-file function in a plain loop, one process."""
    import tempfile

    from zstack_analyzer.batch.tasks import FileJob, process_file
    from zstack_analyzer.limits import ReadLimits

    _preimport({"preimport": TIFF_CZI_MODULES}, ours=True)
    files = _batch_files(args)

    def work() -> dict[str, Any]:
        cache_dir = tempfile.mkdtemp(prefix="zstack-serial-")
        limits = ReadLimits()
        results = [process_file(FileJob(f, limits, cache_dir=cache_dir)) for f in files]
        return _batch_summary(results, cache_dir)

    return work


def pool_many(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """A yardstick, not ours: the same function on a plain process pool (one per core).

    Why: on a shared VM the parallel speed-up the machine allows at the moment is
    itself a figure; a pool with no cluster around it shows that ceiling.
    """
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from zstack_analyzer.batch.tasks import FileJob, process_file  # noqa: F401
    from zstack_analyzer.limits import ReadLimits  # noqa: F401

    _preimport({"preimport": TIFF_CZI_MODULES}, ours=True)
    files = _batch_files(args)

    def work() -> dict[str, Any]:
        cache_dir = tempfile.mkdtemp(prefix="zstack-pool-")
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            results = list(pool.map(partial(_pool_one, cache_dir=cache_dir), files))
        return _batch_summary(results, cache_dir)

    return work


def _pool_one(path: str, *, cache_dir: str) -> Any:
    from zstack_analyzer.batch.tasks import FileJob, process_file
    from zstack_analyzer.limits import ReadLimits

    return process_file(FileJob(path, ReadLimits(), cache_dir=cache_dir))


# ------------------------------------------------------------ issue 17: s3-ranged-thumb/b
def _s3_store_args(args: dict[str, Any]) -> tuple[Any, Any]:
    from zstack_analyzer.storage.remote import S3Location, S3Options

    options = S3Options(
        endpoint_url=args["endpoint"],
        access_key_id="bench",
        secret_access_key="bench-secret",  # noqa: S106  (a loopback test server)
        region="us-east-1",
        allow_http=True,
    )
    return S3Location(args["bucket"]), options


def ours_s3_render(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Open the object by ranged reads (no local copy) and render one plane's thumbnail."""
    from zstack_analyzer.render.thumbnails import render_file
    from zstack_analyzer.storage.remote import RemoteObject, ranged_totals

    _preimport(args, ours=True)
    location, options = _s3_store_args(args)
    remote = RemoteObject(location, options, args["key"], os.path.basename(args["key"]))
    spec = _render_spec(args)

    def work() -> dict[str, Any]:
        before = ranged_totals()
        result = render_file(remote, spec)
        after = ranged_totals()
        info = _png_info(bytes(getattr(result, "data", result)))
        info["gets"] = after[0] - before[0]
        info["bytes_fetched"] = after[1] - before[1]
        return info

    return work


def s3_plane_get_png(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """A floor: one ranged GET of exactly the plane's bytes (offset known beforehand) + PNG."""
    import numpy as np
    import obstore
    from obstore.store import S3Store

    _preimport(args, ours=False)
    store = S3Store(
        args["bucket"],
        config={
            "endpoint": args["endpoint"],
            "access_key_id": "bench",
            "secret_access_key": "bench-secret",
            "region": "us-east-1",
        },
        client_options={"allow_http": True},
    )
    start, length = int(args["offset"]), int(args["length"])
    shape = tuple(args["shape"])

    def work() -> dict[str, Any]:
        raw = obstore.get_range(store, args["key"], start=start, length=length)
        plane = np.frombuffer(memoryview(raw), dtype=args["dtype"]).reshape(shape)
        info = _png_info(_png([plane]))
        info["bytes_fetched"] = length
        return info

    return work


TIFF_CZI_MODULES = [
    "tifffile",
    "imagecodecs",
    "defusedxml.ElementTree",
    "pylibCZIrw.czi",
    "xmltodict",
    "zstack_analyzer.readers._czi_xml",
]


CASES: dict[str, Callable[[dict[str, Any]], Callable[[], dict[str, Any]]]] = {
    f.__name__: f
    for f in (
        ours_import,
        ours_metadata,
        tifffile_metadata,
        czi_metadata,
        czi_metadata_dict,
        bioio_metadata,
        ours_lazy_open,
        tifffile_open,
        ours_load,
        decode_floor,
        ours_render,
        tifffile_page_png,
        streamed_mip_floor,
        czi_plane_loop_mip,
        bioio_mip,
        disk_write_fsync,
        ours_convert,
        ome_zarr_py_convert,
        tifffile_lsm_metadata,
        pydicom_wsi_png,
        ours_batch_many,
        ours_s3_render,
        s3_plane_get_png,
        serial_many,
        pool_many,
    )
}
