"""Chapter companions: the demonstrations and figures only one chapter uses, in a module
named after it (``chNN_<notebook name>.py`` beside ``book/NN_<notebook name>.ipynb``; a
chapter with two parts has two modules ``chNN_<part>.py``),
and :mod:`~vaebook.chapters.display`, which puts checked results on the page.

Chapters may import both halves (:mod:`vaebook.symbolic`, :mod:`vaebook.vae`) and the
figure style (:mod:`vaebook.plots`); neither half imports a chapter.
"""
