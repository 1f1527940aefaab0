"""The patient between the pump and the monitor: vital signs, signals, PK and PD.

Modules (imported by their full names, e.g. ``medtwin.device_models.patient.pk``):

* :mod:`.demographics` — the covariates every model reads (age, weight, height, sex);
* :mod:`.pk` — three-compartment pharmacokinetics with an effect site (Marsh, Schnider,
  Minto, ...), exact for piecewise-constant infusion, vectorised over patients;
* :mod:`.pd` — effect-site concentration to BIS, MAP, HR and RR, and ventilation to SpO2;
* :mod:`.respiration` — ventilation depressed by the drugs with PaCO2 feedback, the airway
  (spontaneous or ventilated), the inspired O2 fraction and the O2 store;
* :mod:`.vitals`, :mod:`.events`, :mod:`.signals` — baseline vital signs with seeded
  variability, scripted events, and the R-peak, plethysmogram and respiration signals;
* :mod:`.model` — all of them composed into one seeded patient record.

Pure models (numpy/scipy only), like every package of :mod:`medtwin.device_models`.
"""
