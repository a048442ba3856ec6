"""Data shipped with suifang: pathway templates, questionnaires, message and report templates."""
