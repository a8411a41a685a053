"""Pictures and pages: piano rolls and loss curves (PNG, matplotlib's Agg renderer), audio rendered
with fluidsynth where it is installed, and the HTML reports of a run and of a comparison.

- :mod:`hvae.report.pianoroll` — piano-roll PNGs of MIDI, drum lanes named, velocity as colour;
- :mod:`hvae.report.curves` — loss-curve PNGs from runs' ``metrics.jsonl``;
- :mod:`hvae.report.audio` — WAVs from MIDI with fluidsynth and a General MIDI soundfont;
- :mod:`hvae.report.html` — the page markup;
- :mod:`hvae.report.run` — ``hvae report RUN_DIR``: one run's page;
- :mod:`hvae.report.comparison` — the page ``hvae compare`` writes.
"""
