# Copyright (c) mmsmlp contributors. All rights reserved.
"""Image loading that reports (or skips) corrupt and truncated files."""
import io
from typing import Optional

import mmengine.fileio as fileio
from mmcv.transforms import LoadImageFromFile
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import MMLogger
from mmengine.registry import TRANSFORMS

_JPEG_SOI, _JPEG_EOI = b'\xff\xd8', b'\xff\xd9'


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that refuses broken images.

    The image is decoded as mmcv does (the configured
    ``imdecode_backend``); an image that cannot be decoded, and a truncated
    JPEG (which OpenCV decodes silently, grey below the cut), raises a
    ``ValueError`` naming the file and the reason. With ``skip_broken=True``
    the image is skipped instead: a warning names it with a running count of
    the images skipped so far (per data-loading process), and the transform
    returns ``None``, so that mmengine's ``BaseDataset`` fetches another
    sample (training only: a test-mode dataset refuses ``None``).

    A JPEG is checked for its end-of-image marker: a read of its last bytes,
    and only when the marker is not at the end (data after the image is
    legal), a scan of the file for it.

    Results that already hold an image and no ``img_path`` pass through
    unchanged: mmpretrain's inferencers load the image themselves and drop
    only a step named ``LoadImageFromFile`` from the config's pipeline.

    Registered in mmengine's root ``TRANSFORMS``: every scope finds it.

    Args:
        skip_broken (bool): Skip broken images instead of raising.
            Defaults to False.
        **kwargs: mmcv's ``LoadImageFromFile`` arguments.
    """

    def __init__(self, skip_broken: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.skip_broken = skip_broken
        self.num_skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        if 'img_path' not in results and 'img' in results:
            return results  # loaded by the caller (an inferencer)
        filename = results['img_path']
        try:
            loaded = super().transform(results)
            reason = None if loaded is None else self._jpeg_truncated(
                filename)
        except AssertionError:  # mmcv's check that an image was decoded
            loaded, reason = None, 'cannot be decoded'
        except Exception as e:  # what the file backend or decoder raised
            loaded, reason = None, f'{type(e).__name__}: {e}'
        if reason is None:
            return loaded  # None only with mmcv's own `ignore_empty`
        if not self.skip_broken:
            raise ValueError(f'Broken image {filename}: {reason}')
        self.num_skipped += 1
        MMLogger.get_current_instance().warning(
            f'Skipped broken image {filename} ({reason}); '
            f'{self.num_skipped} broken image(s) skipped so far')
        return None

    def _read(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            return fileio.FileClient.infer_client(
                self.file_client_args, filename).get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def _head_and_tail(self, filename: str, size: int = 64) -> tuple:
        """The first 2 and the last ``size`` bytes of the file (for a local
        file without reading the rest)."""
        if self.file_client_args is None and isinstance(
                fileio.get_file_backend(
                    filename, backend_args=self.backend_args), LocalBackend):
            with open(filename, 'rb') as f:
                head = f.read(2)
                f.seek(0, io.SEEK_END)
                f.seek(max(f.tell() - size, 0))
                return head, f.read()
        data = self._read(filename)
        return data[:2], data[-size:]

    def _jpeg_truncated(self, filename: str) -> Optional[str]:
        """Why a JPEG is truncated, or None (also for other formats, which
        their decoder has judged)."""
        head, tail = self._head_and_tail(filename)
        if head != _JPEG_SOI or tail.rstrip(b'\x00').endswith(_JPEG_EOI):
            return None
        # Data may follow the image: look for the end-of-image marker after
        # the first start-of-scan (in scan data 0xFF is always escaped, so
        # 0xFFD9 there is the marker), skipping the segments before it (an
        # EXIF thumbnail holds a whole JPEG).
        data = self._read(filename)
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xDA:  # start of scan
                break
            if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
                pos += 1 if marker == 0xFF else 2  # fill byte, no length
                continue
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
        if data.find(_JPEG_EOI, pos) == -1:
            return 'truncated JPEG (no end-of-image marker)'
        return None

    def __repr__(self):
        return f'{super().__repr__()[:-1]}, skip_broken={self.skip_broken})'
