"""What a patient monitor or pulse oximeter shows, given the patient: its own behaviour.

HR from R-R intervals, SpO2 averaging, freeze-then-invalid on signal loss, and an alarm
engine in IEC 60601-1-8 terms (alarm condition delay and alarm signal generation delay kept
apart, every alarm with its t1, t2 and t3). Pure models (numpy/scipy only).
"""
