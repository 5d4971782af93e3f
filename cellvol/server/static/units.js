// Physical lengths for the page: the image's unit (OME-Zarr's "nanometer", "micrometer"...)
// converted to the unit that suits the data (Å, nm or µm) for the cursor and the scale bars.
"use strict";

const DISPLAY_UNITS = [
  { symbol: "Å", nm: 0.1 },
  { symbol: "nm", nm: 1 },
  { symbol: "µm", nm: 1000 },
  { symbol: "mm", nm: 1e6 },
];

const units = {
  // Set by start(): how many nanometres one unit of the image's coordinates is (null: unknown).
  nmPerUnit: null,
  unitName: "",
  display: null,

  // nmPerUnit comes from the server (cellvol.units): one table of units, not two that differ.
  setup(unit, voxelSize, nmPerUnit) {
    this.unitName = unit || "";
    this.nmPerUnit = nmPerUnit ?? null;
    if (this.nmPerUnit === null) {
      this.display = { symbol: this.unitName || "units", nm: null };
      return;
    }
    // The unit in which one voxel is between 1 and 1000 of them: Å for atomic-scale maps,
    // nm for electron microscopy, µm for light microscopy.
    const voxelNm = Math.min(...voxelSize) * this.nmPerUnit;
    this.display = DISPLAY_UNITS[1];
    if (voxelNm < 0.5) this.display = DISPLAY_UNITS[0];
    else if (voxelNm >= 100) this.display = DISPLAY_UNITS[2];
  },

  // A length in the image's unit, in the display unit.
  toDisplay(value) {
    return this.nmPerUnit === null ? value : (value * this.nmPerUnit) / this.display.nm;
  },

  fromDisplay(value) {
    return this.nmPerUnit === null ? value : (value * this.display.nm) / this.nmPerUnit;
  },

  format(value) {
    const shown = this.toDisplay(value);
    const digits = Math.abs(shown) >= 1000 ? 0 : 1;
    return `${shown.toFixed(digits)} ${this.display.symbol}`;
  },

  // The longest 1, 2 or 5 × 10^k display-unit length that is at most ``maxLength`` (image units).
  niceLength(maxLength) {
    const shown = this.toDisplay(maxLength);
    const power = 10 ** Math.floor(Math.log10(shown));
    const step = [5, 2, 1].find((s) => s * power <= shown) || 1;
    const nice = step * power;
    return { length: this.fromDisplay(nice), label: `${Number(nice.toPrecision(3))} ${this.display.symbol}` };
  },
};
