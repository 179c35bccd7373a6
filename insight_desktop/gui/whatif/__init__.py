"""What if: switch concepts off and watch the prediction change (docs/method.md §2, §6).

``switches`` keeps what is switched off, recomputes the Analysis from its codes (no worker) and
puts every change on the curation's undo stack; ``changes_view`` highlights the pixels whose
label changed and lists the class shares before → after; ``levels`` is the Matryoshka level
slider and its mIoU / FVU plot; ``wiring_switches`` installs them into the main window;
``side_by_side`` / ``wiring_side`` show two linked views.
"""
