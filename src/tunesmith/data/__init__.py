"""Data: every format read into canonical records, checked, counted, split, and rendered to tokens."""
