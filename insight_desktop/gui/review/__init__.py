"""Curating concepts in the window: the curation file wired in (:mod:`.curation_controller`),
the review panel and its keys (:mod:`.panel`, :mod:`.review_mode`), the order concepts are
reviewed in (:mod:`.navigation`), exporting and merging (:mod:`.curation_files`), and how it
all is installed into the main window (:mod:`.wiring`)."""
