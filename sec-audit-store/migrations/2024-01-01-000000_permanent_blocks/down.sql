DROP TABLE IF EXISTS permanent_blocks;
