"""The patient between the pump and the monitor: vital signs, signals, PK and PD.

Modules (imported by their full names, e.g. ``medtwin.device_models.patient.pk``):

* :mod:`.demographics` — the covariates every model reads (age, weight, height, sex);
* :mod:`.pk` — three-compartment pharmacokinetics with an effect site (Marsh, Schnider,
  Minto, ...), exact for piecewise-constant infusion, vectorised over patients;
* :mod:`.pd` — effect-site concentration to BIS, MAP, HR and RR, and ventilation to SpO2;
* :mod:`.vitals`, :mod:`.events`, :mod:`.signals` — baseline vital signs with seeded
  variability, scripted events, and the R-peak, plethysmogram and respiration signals.

Pure models (numpy/scipy only), like every package of :mod:`medtwin.device_models`.
"""
