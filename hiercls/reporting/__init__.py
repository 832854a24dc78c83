"""What people look at: figures (:mod:`~hiercls.reporting.plots`) and the HTML report
(:mod:`~hiercls.reporting.html`)."""
