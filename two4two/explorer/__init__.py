"""The interactive explorer of attribution maps, ROAD curves and ground truth (`two4two explore`)."""
