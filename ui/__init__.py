"""Dashboard code shared by the pages that is not a page itself (Streamlit scans pages/)."""
