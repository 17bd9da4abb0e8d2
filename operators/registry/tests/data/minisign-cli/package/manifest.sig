untrusted comment: signature from minisign secret key
RUQOVhfOzS3TV0dNx+auSbEbpE3Lb4Nny5AkDkOkL0cgFJklRON4lD29nF37v3+K4N3+j5IL0U55cYYwlUedRdFJqR5cg2K6NAc=
trusted comment: forgeline-model cli-signed 0.3.0 (signed by minisign 0.11 CLI)
RtdVb8Y7C3blN1wqxMoFgBcAhJIY6OavQ1KAj5VcLzXrl3KCCVwJpHFB2+oe9eoP4cuJBT7/bi47YaGBIdRQAg==
