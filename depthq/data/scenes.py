"""``scenes``: patches of 49 real photographs of 48 scenes, split by scene.

The 11 photographs bundled with scikit-image and scikit-learn (``depthq.data.photos``, used at
their own size) plus the 38 real photographs among Debian's wallpaper packages (``WALLPAPERS``),
box-downscaled by ``REDUCE`` = 4. The wallpapers are 1.3-20 megapixel JPEGs; at that size most
32x32 patches are smooth sky, bokeh or JPEG-smoothed surfaces, and a 4x box average brings the
statistics closer to the standard Kodak set (the README gives the flat-patch shares before and
after, measured while cutting: ``PatchSet.meta["sources"]``).

Every photograph was looked at; artwork (gradients, renders, drawings) is not in the list. Each
entry names its Debian package, its path, its licence as the package's ``copyright`` file states
it, its split and its scene: two views of one scene (the stereo_motorcycle pair) share a scene id,
and no scene has photographs on both sides of the split. The test split is 10 of the 48 scenes
(21%): the three test photos of ``photos`` (chelsea, coffee, china) and seven varied wallpapers
(a lake at dusk, dogs at a window, mountains, an interior, a forest, a kite in the sky, a
macro shot). Splits are built as in ``photos`` (``depthq.data.patches``): test photos cut into
non-overlapping patches, training photos at stride ``P // 4``, val held out by 64x64 region.

The wallpapers are read from ``<root>/usr/share/...``: root is ``root=`` (CLI ``--root``), else
``$DEPTHQ_WALLPAPERS``, else ``/`` (the installed packages). When any is missing, ``scenes``
raises ``FileNotFoundError`` naming the packages and the ``apt-get`` line: a run never trains or
evaluates on other images than it says. ``choose_photo_set()`` is the zero-install path for
callers that may run anywhere (the demo): ``scenes`` when installed, else the bundled ``photos``
with a warning that says which set runs and how to get the other.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from depthq.data import cache
from depthq.data.folder import to_rgb
from depthq.data.imageset import ImageSet
from depthq.data.patches import PatchSet, PatchSource, cached_patches, split_set
from depthq.data.photos import PHOTOS, PHOTOS_VERSION, load_photo
from depthq.errors import DataError, MissingFileError

log = logging.getLogger(__name__)

WALLPAPER_ENV = "DEPTHQ_WALLPAPERS"
REDUCE = 4  # box-downscaling factor of the wallpapers
SCENES_VERSION = 1
MAX_PATCH_SIZE = 256  # the shortest side after downscaling (GreenMeadow, 1280x1024 / 4)
PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds", "plasma-workspace-wallpapers")


@dataclass(frozen=True)
class Wallpaper:
    """One real photograph from a Debian wallpaper package."""

    name: str
    package: str  # the Debian package that installs it
    path: str  # where the package installs it
    licence: str  # as the package's /usr/share/doc/<package>/copyright states it
    test: bool  # held out as the test split
    scene: str  # photographs of one scene share it and stay on one side of the split


_LOMIRI16, _LOMIRI20, _MATE, _PLASMA = PACKAGES
_PLASMA_LICENCE = "GPL-2+ (package copyright, Files: *; the wallpaper's metadata.json: LGPLv3), {}"


def _lomiri(file: str, licence: str, test: bool = False, package: str = _LOMIRI16) -> Wallpaper:
    name = file.removesuffix(".jpg")
    return Wallpaper(name, package, f"/usr/share/backgrounds/{file}", licence, test, name)


def _mate(name: str, holder: str, test: bool = False) -> Wallpaper:
    return Wallpaper(name, _MATE, f"/usr/share/backgrounds/mate/nature/{name}.jpg", f"GPL-2+ ({holder})", test, name)


def _plasma(name: str, photographer: str, test: bool = False) -> Wallpaper:
    return Wallpaper(
        name,
        _PLASMA,
        f"/usr/share/wallpapers/{name}/contents/images/2560x1600.jpg",
        _PLASMA_LICENCE.format(photographer),
        test,
        name,
    )


WALLPAPERS: tuple[Wallpaper, ...] = (
    # lomiri-wallpapers-16.04: every *_by_*.jpg but umang_by_Abhishek_Mudgal.jpg (a colour gradient)
    _lomiri("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0 (2018, Sander Klootwijk)"),
    _lomiri("Dragonfly_by_Bolly.jpg", 'CC-BY-SA-4.0 (2018, "Bolly")'),
    _lomiri("Picture_0B_by_freespace.jpg", 'CC-BY-4.0 (2018, Trevor "Freespace")'),
    _lomiri("Picture_1A_by_freespace.jpg", 'CC-BY-4.0 (2018, Trevor "Freespace")'),
    _lomiri("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0 (2018, Jakub Mede)", test=True),
    _lomiri("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0 (2018, Aitzol Berasategi)"),
    _lomiri("analogpattern_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0 (2018, Peter Nerlich)"),
    _lomiri("free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0 (2018, Peter Nerlich)"),
    _lomiri("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0 (2018, Aitzol Berasategi)", test=True),
    _lomiri("greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0 (2018, Peter Nerlich)"),
    _lomiri("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0 (2018, Aitzol Berasategi)"),
    _lomiri("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0 (2018, Aitzol Berasategi)", test=True),
    _lomiri("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0 (2018, Clemens Engelhardt)"),
    _lomiri("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0 (2018, Aitzol Berasategi)"),
    # lomiri-wallpapers-20.04: the only photograph (Fossa, Infinite-Sea, Painting-Colors are artwork)
    _lomiri("Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0 (2021, Lukas Baubkus)", package=_LOMIRI20),
    # mate-backgrounds: nature/ (abstract/ and desktop/ are artwork). Aqua, Garden, LadyBird and
    # YellowFlower (soft macro shots) and FreshFlower (upscaled) are kept: after the 4x box average
    # they keep as much detail as the other photographs (a 2x down-and-up loses 35-40 dB PSNR of
    # them against 25-49 dB for the rest of the list)
    _mate("Aqua", "2008, Charles Barbin"),
    _mate("Blinds", "2008, Lennart Poettering, Andrea Cimitan"),
    _mate("Dune", "2007, Marco Cogoni; 2008, Hylke Bons"),
    _mate("FreshFlower", "2005, Jens Ansorg"),
    _mate("Garden", "2008, Charles Barbin"),
    _mate("GreenMeadow", "2005, Timothy Schellhase; 2008, Lapo Calamandrei"),
    _mate("LadyBird", "2008, Charles Barbin"),
    _mate("RainDrops", '2008, "blackcombwhistler07"'),
    _mate("Storm", "2008, Sergey Nazarov"),
    _mate("TwoWings", "2008, Charles Barbin, Hylke Bons", test=True),
    _mate("Wood", "2008, Jean-Francois Fortin Tam"),
    _mate("YellowFlower", "2008, Charles Barbin"),
    # plasma-workspace-wallpapers: one file per photograph (the other sizes are copies); the rest
    # of the package is artwork. Grey is a greyscale photograph (read as R = G = B)
    _plasma("BytheWater", "Maciej Wiklo"),
    _plasma("ColdRipple", "Risto Saukonpaa"),
    _plasma("ColorfulCups", "Dmitri Popov"),
    _plasma("DarkestHour", "Risto Saukonpaa"),
    _plasma("EveningGlow", "Ian Hex", test=True),
    _plasma("FallenLeaf", "Martin Klapetek"),
    _plasma("Grey", "Sigi Sagi"),
    _plasma("Kite", "Risto Saukonpaa", test=True),
    _plasma("OneStandsOut", "Risto Saukonpaa"),
    _plasma("Path", "Risto Saukonpaa", test=True),
    _plasma("summer_1am", "Risto Saukonpaa"),
)
PHOTO_SCENES = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}  # the rest: one scene each


@dataclass(frozen=True)
class SceneImage:
    """One photograph of ``scenes``, bundled or from a wallpaper package (for tables and checks)."""

    name: str
    origin: str  # "scikit-image", "scikit-learn" or the Debian package
    licence: str
    test: bool
    scene: str
    reduce: int  # its box-downscaling factor


def scene_images() -> list[SceneImage]:
    """Every photograph of ``scenes``, in cache order: the bundled photos, then the wallpapers."""
    bundled = [
        SceneImage(
            p.name,
            "scikit-image" if p.package == "skimage.data" else "scikit-learn",
            p.licence,
            p.test,
            PHOTO_SCENES.get(p.name, p.name),
            1,
        )
        for p in PHOTOS
    ]
    return bundled + [SceneImage(w.name, w.package, w.licence, w.test, w.scene, REDUCE) for w in WALLPAPERS]


def wallpaper_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``usr/share/...``: ``root``, else ``$DEPTHQ_WALLPAPERS``, else ``/``."""
    if root is None:
        root = os.environ.get(WALLPAPER_ENV) or "/"
    return Path(root).expanduser()


def wallpaper_file(wallpaper: Wallpaper, root: str | os.PathLike | None = None) -> Path:
    return wallpaper_root(root) / wallpaper.path.lstrip("/")


def missing_packages(root: str | os.PathLike | None = None) -> list[str]:
    """The packages of which at least one listed photograph is absent under the root."""
    return sorted({w.package for w in WALLPAPERS if not wallpaper_file(w, root).is_file()})


def install_command(packages: list[str] | tuple[str, ...] = PACKAGES) -> str:
    """The shell line that installs ``packages`` (about 170 MB for all four)."""
    return f"sudo apt-get install -y {' '.join(packages)}"


def _load_wallpaper(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(to_rgb(im))
    except OSError as err:
        raise DataError(
            f"cannot read wallpaper {path} ({err}): corrupt or truncated? "
            f"reinstall it with: {install_command(PACKAGES)} --reinstall"
        ) from err


def scene_patches(patch_size: int = 32, stride: int | None = None, root: str | os.PathLike | None = None) -> PatchSet:
    """The train and test patches of ``scenes``, cut on first use and memory-mapped after.

    Raises:
        FileNotFoundError: a listed wallpaper is absent (the message gives the apt-get line).
    """
    if not 2 <= patch_size <= MAX_PATCH_SIZE:
        raise DataError(
            f"scenes patch size must be in 2..{MAX_PATCH_SIZE} (the smallest photo is "
            f"{MAX_PATCH_SIZE} pixels high after downscaling); got {patch_size}"
        )
    base = wallpaper_root(root)
    missing = missing_packages(base)
    if missing:
        raise MissingFileError(
            f"the scenes data set needs the real photographs of the Debian packages {', '.join(missing)}, "
            f"not found under {base} (root= / --root / ${WALLPAPER_ENV} / '/'). Install them (no dependencies, "
            f"about 170 MB for all four): {install_command(PACKAGES)}; or use the built-in data set 'photos'."
        )
    files = [wallpaper_file(w, base) for w in WALLPAPERS]
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = cache.cache_key(
        [(p.name, p.file, p.test) for p in PHOTOS],
        PHOTOS_VERSION,
        [(w.name, w.path, w.test) for w in WALLPAPERS],
        stats,
        REDUCE,
        SCENES_VERSION,
    )
    sources = [PatchSource(p.name, p.test, functools.partial(load_photo, p)) for p in PHOTOS] + [
        PatchSource(w.name, w.test, functools.partial(_load_wallpaper, f), REDUCE) for w, f in zip(WALLPAPERS, files)
    ]
    return cached_patches("scenes", key, sources, patch_size, stride)


def describe_source(ps: PatchSet, root: Path) -> str:
    """One line saying which photographs, how they were cut, and where the wallpapers were read."""
    images = scene_images()
    test = [i for i in images if i.test]
    return (
        f"{len(images)} real photographs of {len({i.scene for i in images})} scenes: {len(PHOTOS)} bundled with "
        f"scikit-image/scikit-learn (full size) + {len(WALLPAPERS)} from Debian wallpaper packages "
        f"(box-downscaled {REDUCE}x, read under {root}); {ps.patch_size}x{ps.patch_size} patches; "
        f"train: {len(images) - len(test)} photos at stride {ps.stride}; test: {len({i.scene for i in test})} "
        f"other scenes ({', '.join(i.name for i in test)}; whole photos, non-overlapping patches)"
    )


def load_scenes(
    split: str = "train",
    *,
    patch_size: int = 32,
    stride: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> ImageSet:
    """One split of ``scenes`` as an ``ImageSet`` of uint8 (N, 3, P, P); see the module docstring."""
    ps = scene_patches(patch_size, stride, root)
    images = split_set(
        ps, split, name="scenes", source=describe_source(ps, wallpaper_root(root)), val_fraction=val_fraction, seed=seed
    )
    log.info(
        "data set scenes [%s]: %d patches of %dx%d from %d real photographs (%d bundled + %d wallpapers)",
        split,
        len(images),
        patch_size,
        patch_size,
        len(ps.is_test),
        len(PHOTOS),
        len(WALLPAPERS),
    )
    return images


@dataclass(frozen=True)
class PhotoSetChoice:
    """Which real-photo data set a caller that must run anywhere should use, and why."""

    name: str  # "scenes" or "photos"
    fallback: bool  # True: scenes was wanted but its packages are missing
    message: str  # one line saying which set runs (and, on fallback, how to get scenes)


def choose_photo_set(root: str | os.PathLike | None = None) -> PhotoSetChoice:
    """``scenes`` when its wallpaper packages are installed, else ``photos`` with a logged warning.

    For commands that must run on any machine (the demo); a config that names ``scenes`` asks for
    it explicitly and gets an error instead of other images.
    """
    missing = missing_packages(root)
    if not missing:
        return PhotoSetChoice(
            "scenes",
            False,
            f"data: scenes ({len(scene_images())} real photographs of {len({i.scene for i in scene_images()})} scenes)",
        )
    message = (
        f"data: the built-in photos (11 photographs), NOT scenes: the Debian packages {', '.join(missing)} "
        f"are not installed; for the 48-scene set run: {install_command(PACKAGES)}"
    )
    log.warning(message)
    return PhotoSetChoice("photos", True, message)
