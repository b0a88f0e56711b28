"""lut_baking."""
