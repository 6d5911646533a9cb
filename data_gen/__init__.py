"""Dataset generators: DMLab-style mazes and Minecraft-style voxel worlds."""
