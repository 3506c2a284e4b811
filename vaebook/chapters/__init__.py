"""Chapter companions: one module per chapter, holding the demonstrations and figures only
that chapter uses (``chNN_<notebook name>.py`` beside ``book/NN_<notebook name>.ipynb``),
and :mod:`~vaebook.chapters.display`, which puts checked results on the page.

Chapters may import both halves (:mod:`vaebook.symbolic`, :mod:`vaebook.vae`) and the
figure style (:mod:`vaebook.plots`); neither half imports a chapter.
"""
