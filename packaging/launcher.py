"""Entry point of the frozen app: ``insight-desktop`` = ``insight_desktop.gui.app:main``.

PyInstaller needs a script, not an entry point; this is the script. Importing it imports
nothing heavy: torch and the model load later, on the worker thread.
"""

import multiprocessing
import sys

from insight_desktop.gui.app import main

if __name__ == "__main__":
    # A frozen executable re-runs itself for any subprocess that multiprocessing starts (torch's
    # DataLoader workers, for one); freeze_support() lets those children do their work and exit.
    multiprocessing.freeze_support()
    sys.exit(main())
