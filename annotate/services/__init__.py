"""Write-side functions of the annotate app (HackSoft services): one transaction each, domain errors."""
