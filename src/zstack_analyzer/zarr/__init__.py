"""OME-Zarr (NGFF): convert any file to it, serve any file as it, and read it.

Why one package: the writer, the virtual store of the service and the reader
share one description of the layout (axes, pyramid levels, scales, the
``omero`` block), kept in :mod:`zstack_analyzer.zarr.ngff`, so what we write
and what we serve are the same thing.

Modules: ``ngff`` (layout and attributes), ``pyramid`` (level shapes and 2x
reduction), ``writer`` (:func:`convert`), ``virtual`` (the on-the-fly store),
``reader`` (:class:`OmeZarrReader`), ``unzip`` (safe extraction of an uploaded
``.zip`` of a directory).
"""
