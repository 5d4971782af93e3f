import pytest

from cellvol.errors import InvalidInputError
from cellvol.units import VoxelSize, normalize_unit


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("nm", "nanometer"),
        ("Å", "angstrom"),
        ("A", "angstrom"),
        ("um", "micrometer"),
        ("µm", "micrometer"),
        ("nanometer", "nanometer"),
        (" NM ", "nanometer"),
    ],
)
def test_unit_spellings(spelling: str, name: str) -> None:
    assert normalize_unit(spelling) == name


def test_unknown_unit_names_the_unit() -> None:
    with pytest.raises(InvalidInputError, match="parsec"):
        normalize_unit("parsec")


def test_conversion_angstrom_to_nm() -> None:
    size = VoxelSize(4.48, 3.93, 4.59, "Å").to("nm")
    assert size.unit == "nanometer"
    assert size.zyx == pytest.approx((0.448, 0.393, 0.459))


def test_of_accepts_scalar_triple_and_instance() -> None:
    assert VoxelSize.of(2).zyx == (2.0, 2.0, 2.0)
    assert VoxelSize.of((30, 5, 5)).zyx == (30.0, 5.0, 5.0)
    size = VoxelSize(1, 2, 3)
    assert VoxelSize.of(size) is size


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "abc", None])
def test_bad_sizes_are_refused_with_axis_named(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="along z"):
        VoxelSize(bad, 1, 1)  # type: ignore[arg-type]


def test_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="three values"):
        VoxelSize.of((1, 2))


def test_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="positive"):
        VoxelSize(-1, 1, 1)


def test_scaled() -> None:
    assert VoxelSize(30, 5, 5).scaled((1, 2, 2)).zyx == (30.0, 10.0, 10.0)


def test_unit_conversion_gives_the_decimal_not_binary_noise() -> None:
    # 11.4 / 10 is 1.1400000000000001 in binary floating point.
    assert VoxelSize(11.4, 0.834, 4.59, "Å").to("nm") == VoxelSize(1.14, 0.0834, 0.459, "nm")
    assert VoxelSize(1.14, 1.14, 1.14, "nm").to("Å").zyx == (11.4, 11.4, 11.4)


def test_a_float64_voxel_size_is_kept_exactly() -> None:
    value = 0.08340000152587891  # what float32 noise looks like, given on purpose
    assert VoxelSize(value, value, value).zyx == (value, value, value)
    assert VoxelSize.of(value, "nm").to("nanometer").z == value
