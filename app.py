"""MolScope: the dashboard. Every page is drawn in the frame of ``ui.frame`` (navigation over
pages/, the list of pages and the checkpoint picker in the sidebar), then run.

    streamlit run app.py
"""

from __future__ import annotations

import streamlit as st

import core  # noqa: F401  (fast BLAS before mlx)
from ui.common import FRAME_KEY
from ui.frame import draw_frame

page = draw_frame()
st.session_state[FRAME_KEY] = True  # the page's ensure_app_frame: its frame is drawn
page.run()
